/**
 * The BLE mapper's configuration: the device's protocol block (v1alpha2 `bluetooth`, v1beta1
 * configData) and each property's visitor, either a GATT characteristic as KubeEdge's bluetooth
 * mapper describes it or a measurement carried in advertisements (BTHome v2, ATC/pvvx).
 */
import * as v from 'valibot';
import type { Device, DeviceModel } from '../../src/devices/model.js';
import { parseAt, parseDeviceConfig, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { parseWith, type Parsed } from '../../src/schema.js';
import { FORMATS, type AdvertisementFormat } from './advertisement.js';

const nonEmpty = v.pipe(v.string(), v.minLength(1, 'must not be empty'));

const macAddress = v.pipe(
  v.string(),
  v.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'expected a MAC address such as BC:6A:29:AE:CC:96'),
  v.toLowerCase(),
);

/** `hci1` or `1`: the controller's index. */
const adapter = v.union(
  [
    v.pipe(v.number(), v.integer(), v.minValue(0)),
    v.pipe(
      v.string(),
      v.regex(/^(hci)?\d+$/, 'expected a controller such as hci0'),
      v.transform((s) => Number(s.replace('hci', ''))),
    ),
  ],
  'expected a controller such as hci0',
);

export const protocolSchema = v.pipe(
  v.strictObject({
    macAddress: v.optional(macAddress),
    /** For peripherals whose address changes (random resolvable addresses): matched by advertised name. */
    localName: v.optional(nonEmpty),
    adapter: v.optional(adapter),
    /** Milliseconds without an advertisement after which advertised values are stale. */
    advertisementTimeout: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100))),
  }),
  v.check((p) => p.macAddress !== undefined || p.localName !== undefined, 'needs macAddress (or localName) to find the device'),
);

export type ProtocolConfig = v.InferOutput<typeof protocolSchema>;

/** Short (16/32-bit) and full UUIDs as noble names them: lower-case hex without dashes, Bluetooth-base UUIDs shortened. */
const BASE_UUID_SUFFIX = '00001000800000805f9b34fb';
export function normalizeUuid(uuid: string): string {
  const hex = uuid.toLowerCase().replace(/^0x/, '').replaceAll('-', '');
  if (hex.length === 32 && hex.endsWith(BASE_UUID_SUFFIX) && hex.startsWith('0000')) return hex.slice(4, 8);
  return hex;
}

const uuid = v.pipe(
  v.string(),
  v.regex(/^(0x)?([0-9a-fA-F]{4}|[0-9a-fA-F]{8}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$/, 'expected a 16-bit, 32-bit or 128-bit UUID'),
  v.transform(normalizeUuid),
);

const byte = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(255));
/** Go's map[string][]byte takes a byte array, or a base64 string as its JSON encoding has it. */
const bytes = v.union(
  [
    v.pipe(v.array(byte), v.minLength(1, 'must not be empty'), v.transform((a) => Buffer.from(a))),
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64'), v.transform((s) => Buffer.from(s, 'base64'))),
  ],
  'expected a byte array such as [1] or a base64 string',
);

const OPERATIONS = ['Add', 'Subtract', 'Multiply', 'Divide'] as const;
export type OperationType = (typeof OPERATIONS)[number];

const operation = v.object({
  // KubeEdge's mapper compares operation names case-insensitively.
  operationType: v.pipe(
    v.string(),
    v.transform((s) => OPERATIONS.find((o) => o.toLowerCase() === s.toLowerCase()) ?? s),
    v.picklist(OPERATIONS, `expected one of ${OPERATIONS.join(', ')}`),
  ),
  // One of KubeEdge's mapper generations declares the value as a string.
  operationValue: v.union([v.number(), v.pipe(v.string(), v.decimal(), v.transform(Number))], 'expected a number'),
});

const index = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(511));
const shift = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(52));

const dataConverter = v.object({
  startIndex: v.optional(index, 0),
  endIndex: v.optional(index, 0),
  shiftLeft: v.optional(shift, 0),
  shiftRight: v.optional(shift, 0),
  orderOfOperations: v.optional(v.array(operation), []),
  /** Not in KubeEdge: reads the bytes as two's complement, as standard characteristics (0x2A6E temperature) need. */
  signed: v.optional(v.boolean(), false),
});

export type DataConverter = v.InferOutput<typeof dataConverter>;

const gattVisitor = v.strictObject({
  characteristicUUID: uuid,
  dataWrite: v.optional(v.nullable(v.record(v.string(), bytes))),
  dataConverter: v.optional(v.nullable(dataConverter)),
  /** Whether to follow notifications/indications; by default, when the characteristic offers them. */
  subscribe: v.optional(v.boolean()),
});

const ADVERTISEMENT_FORMATS = Object.keys(FORMATS) as AdvertisementFormat[];

const advertisementVisitor = v.strictObject({
  advertisement: v.picklist(ADVERTISEMENT_FORMATS, `expected one of ${ADVERTISEMENT_FORMATS.join(', ')}`),
  /** The measurement's name in that format (temperature, humidity, battery, …). */
  measurement: nonEmpty,
  /** Which one, when a packet carries the same measurement more than once. */
  index: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
});

export interface GattVisitor {
  kind: 'gatt';
  characteristicUUID: string;
  dataWrite?: Record<string, Buffer>;
  dataConverter?: DataConverter;
  subscribe?: boolean;
}

export interface AdvertisementVisitor {
  kind: 'advertisement';
  advertisement: AdvertisementFormat;
  measurement: string;
  index: number;
}

export type BleVisitor = GattVisitor | AdvertisementVisitor;

const CONVERTER_FIELDS = ['startIndex', 'endIndex', 'shiftLeft', 'shiftRight', 'orderOfOperations', 'signed'];

/**
 * KubeEdge's own CC2650 sample indents `dataConverter:` and `dataWrite:` one level too little,
 * leaving them null and their fields beside them. Those fields are folded back where the
 * author meant them, instead of being dropped as the apiserver would.
 */
function unflatten(visitor: Record<string, unknown>): Record<string, unknown> {
  const { characteristicUUID, dataWrite, dataConverter, subscribe, ...rest } = visitor;
  const strayConverter = Object.fromEntries(Object.entries(rest).filter(([k]) => CONVERTER_FIELDS.includes(k)));
  const strayWrites = Object.fromEntries(Object.entries(rest).filter(([k, value]) => !CONVERTER_FIELDS.includes(k) && Array.isArray(value)));
  const others = Object.fromEntries(Object.entries(rest).filter(([k]) => !(k in strayConverter) && !(k in strayWrites)));
  const folded: Record<string, unknown> = { characteristicUUID, ...others };
  if (subscribe !== undefined) folded.subscribe = subscribe;
  const converter = dataConverter ?? (Object.keys(strayConverter).length > 0 ? strayConverter : undefined);
  if (converter !== undefined) folded.dataConverter = converter;
  const writes = dataWrite ?? (Object.keys(strayWrites).length > 0 ? strayWrites : undefined);
  if (writes !== undefined) folded.dataWrite = writes;
  return folded;
}

/**
 * A GATT visitor or an advertisement visitor, told apart by their fields; undefined for a
 * property without one (listed in status.twins only), which has nothing to read.
 */
export function parseVisitor(visitor: Record<string, unknown>): Parsed<BleVisitor> | undefined {
  if (Object.keys(visitor).length === 0) return undefined;
  if ('advertisement' in visitor) {
    const parsed = parseWith(advertisementVisitor, visitor);
    if (!parsed.ok) return parsed;
    const { advertisement, measurement } = parsed.value;
    if (!FORMATS[advertisement].measurements.has(measurement)) {
      return { ok: false, issues: [{ path: 'measurement', message: `${advertisement} has no measurement ${JSON.stringify(measurement)}` }] };
    }
    return { ok: true, value: { kind: 'advertisement', ...parsed.value } };
  }
  if (!('characteristicUUID' in visitor)) return { ok: false, issues: [{ path: '', message: 'needs characteristicUUID (GATT) or advertisement and measurement' }] };
  const parsed = parseWith(gattVisitor, unflatten(visitor));
  if (!parsed.ok) return parsed;
  const { characteristicUUID, dataWrite, dataConverter, subscribe } = parsed.value;
  return { ok: true, value: { kind: 'gatt', characteristicUUID, dataWrite: dataWrite ?? undefined, dataConverter: dataConverter ?? undefined, subscribe } };
}

/** How to find the device and what each property reads, or every issue with its place in the manifest. */
export function parseBle(device: Device, model: DeviceModel): Parsed<DeviceConfig<ProtocolConfig, BleVisitor>> {
  return parseDeviceConfig(device, model, (d) => parseAt(protocolSchema, d.protocol.config, d.fields.protocol), parseVisitor);
}
