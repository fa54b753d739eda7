/**
 * Modbus device and visitor configuration from KubeEdge manifests: v1beta1 `configData`
 * (communicateMode TCP/RTU/RTUoverTCP) and v1alpha2 `modbus` plus `common.tcp` / `common.com` blocks.
 * Upstream's `int`, `float` and `double` are read as KubeEdge's modbus mappers read them.
 */
import * as v from 'valibot';
import type { Device, DeviceModel, ModelProperty } from '../../src/devices/model.js';
import { at, parseAt, parseDeviceConfig, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { parseWith, type Parsed } from '../../src/schema.js';
import { registerCount } from './codec.js';
import { holdsBits, type DataType, type ModbusDevice, type Transport, type Visitor } from './types.js';

const ADDRESS_SPACE = 65536;

const integer = (min: number, max: number) =>
  v.pipe(
    v.union([v.number(), v.pipe(v.string(), v.regex(/^\d+$/, 'must be a whole number'), v.transform(Number))], 'must be a number'),
    v.integer(),
    v.minValue(min),
    v.maxValue(max),
  );
const number = v.union([v.number(), v.pipe(v.string(), v.regex(/^-?\d+(\.\d+)?$/, 'must be a number'), v.transform(Number))], 'must be a number');
const parity = v.pipe(v.string(), v.transform((p) => p.toLowerCase()), v.picklist(['none', 'even', 'odd'], 'must be none, even or odd'));

const serialFields = {
  // Upstream v1beta1 names the port `serialName`; the agent's `serialPort` stays.
  serialPort: v.optional(v.pipe(v.string(), v.minLength(1))),
  serialName: v.optional(v.pipe(v.string(), v.minLength(1))),
  // Accepted as upstream has it; the direction of an RS-485 line is switched by its adapter or kernel driver.
  rs485Enabled: v.optional(v.boolean()),
  baudRate: v.optional(integer(50, 4_000_000), 9600),
  dataBits: v.optional(v.pipe(integer(5, 8), v.transform((n) => n as 5 | 6 | 7 | 8)), 8),
  parity: v.optional(parity, 'none'),
  stopBits: v.optional(v.pipe(integer(1, 2), v.transform((n) => n as 1 | 2)), 1),
};
const common = {
  slaveID: v.optional(integer(0, 247), 1),
  timeout: v.optional(integer(10, 60_000)),
  delayMs: v.optional(integer(0, 10_000), 0),
  writeMultiple: v.optional(v.boolean(), false),
};
const tcpFields = { ip: v.pipe(v.string(), v.minLength(1)), port: v.optional(integer(1, 65535), 502) };

const beta1Protocol = v.variant('communicateMode', [
  v.looseObject({ communicateMode: v.literal('TCP'), ...tcpFields, ...common }),
  v.looseObject({ communicateMode: v.literal('RTUoverTCP'), ...tcpFields, ...common }),
  v.looseObject({ communicateMode: v.literal('RTU'), ...serialFields, ...common }),
]);
const alpha2Common = v.union(
  [
    v.looseObject({ tcp: v.looseObject(tcpFields) }),
    v.looseObject({ com: v.looseObject(serialFields) }),
  ],
  'needs common.tcp (ip, port) or common.com (serialPort, …)',
);

const registerType = v.picklist(['CoilRegister', 'DiscreteInputRegister', 'HoldingRegister', 'InputRegister'], 'must be CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister');
const DATA_TYPES = ['int', 'float', 'double', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64', 'boolean', 'string'] as const;
const dataType = v.pipe(
  v.string(),
  v.transform((t) => (t.toLowerCase() === 'bool' ? 'boolean' : t.toLowerCase())),
  v.picklist(DATA_TYPES, `must be ${DATA_TYPES.slice(0, -1).join(', ')} or string`),
);
type NamedType = (typeof DATA_TYPES)[number];
const visitorSchema = v.looseObject({
  register: registerType,
  offset: integer(0, ADDRESS_SPACE - 1),
  limit: v.optional(integer(1, 125)),
  scale: v.optional(number, 1),
  isSwap: v.optional(v.boolean(), false),
  isRegisterSwap: v.optional(v.boolean(), false),
  dataType: v.optional(dataType),
  max: v.optional(number),
  min: v.optional(number),
});

type Serial = { serialPort?: string; serialName?: string; baudRate: number; dataBits: 5 | 6 | 7 | 8; parity: 'none' | 'even' | 'odd'; stopBits: 1 | 2 };
type Common = { slaveID: number; timeout?: number; delayMs: number; writeMultiple: boolean };

function serialTransport(c: Serial, base: string): Parsed<Transport> {
  const path = c.serialPort ?? c.serialName;
  if (!path) return { ok: false, issues: [{ path: base, message: 'needs serialPort (or serialName)' }] };
  return { ok: true, value: { kind: 'rtu', path, baudRate: c.baudRate, dataBits: c.dataBits, parity: c.parity, stopBits: c.stopBits } };
}

function modbusDevice(transport: Parsed<Transport>, c: Common): Parsed<ModbusDevice> {
  if (!transport.ok) return transport;
  return { ok: true, value: { transport: transport.value, slaveId: c.slaveID, timeoutMs: c.timeout ?? 1000, delayMs: c.delayMs, writeMultiple: c.writeMultiple } };
}

/** The line and the slave: v1alpha2 splits them between `common` and the `modbus` block, v1beta1 keeps both in configData. */
function parseDevice(device: Device): Parsed<ModbusDevice> {
  const { config, common: alpha2 } = device.protocol;
  const { fields } = device;
  if (alpha2) {
    const parsedCommon = parseWith(alpha2Common, alpha2);
    const parsed = parseWith(v.looseObject(common), config);
    if (!parsedCommon.ok || !parsed.ok) {
      // A v1alpha2 device has both the block and the path of its `common`.
      const issues = [...(parsedCommon.ok ? [] : at(fields.common!, parsedCommon.issues)), ...(parsed.ok ? [] : at(fields.protocol, parsed.issues))];
      return { ok: false, issues };
    }
    const c = parsedCommon.value as { tcp: { ip: string; port: number } } | { com: Serial };
    const transport: Parsed<Transport> = 'tcp' in c ? { ok: true, value: { kind: 'tcp', host: c.tcp.ip, port: c.tcp.port } } : serialTransport(c.com, `${fields.common!}.com`);
    return modbusDevice(transport, parsed.value);
  }
  const parsed = parseAt(beta1Protocol, config, fields.protocol);
  if (!parsed.ok) return parsed;
  const c = parsed.value;
  if (c.communicateMode === 'RTU') return modbusDevice(serialTransport(c, fields.protocol), c);
  return modbusDevice({ ok: true, value: { kind: c.communicateMode === 'TCP' ? 'tcp' : 'rtu-over-tcp', host: c.ip, port: c.port } }, c);
}

/** Upstream's width by `limit` (registers); an `int` is unsigned there. Without a limit, a `float` stays the agent's float32. */
const UPSTREAM: Record<'int' | 'float' | 'double', { widths: Record<number, DataType>; none: DataType; says: string }> = {
  int: { widths: { 1: 'uint16', 2: 'uint32', 4: 'uint64' }, none: 'uint16', says: 'int spans 1, 2 or 4 registers (16, 32 or 64 bits)' },
  float: { widths: { 1: 'uint16', 2: 'float32', 4: 'float64' }, none: 'float32', says: 'float spans 1 register (× scale), 2 (float32) or 4 (float64)' },
  double: { widths: { 4: 'float64' }, none: 'float64', says: 'double spans 4 registers' },
};

const isUpstream = (type: NamedType): type is keyof typeof UPSTREAM => type in UPSTREAM;

/** The type a visitor reads: upstream names resolved by `limit`; without a dataType, KubeEdge's mapper reads by the model type. */
function resolveDataType(named: NamedType | undefined, model: ModelProperty, bits: boolean, limit: number | undefined): Parsed<DataType> {
  const type = named ?? (bits || model.type === 'boolean' ? 'boolean' : model.type === 'string' ? 'string' : model.type === 'float' || model.type === 'double' ? model.type : 'int');
  if (!isUpstream(type)) return { ok: true, value: type };
  // On a bit, any number reads 0 or 1.
  if (bits) return { ok: true, value: 'uint16' };
  const upstream = UPSTREAM[type];
  const value = limit === undefined ? upstream.none : upstream.widths[limit];
  return value ? { ok: true, value } : { ok: false, issues: [{ path: 'limit', message: upstream.says }] };
}

/** One visitor, with the checks across its fields (a register type's width, the address space). */
function parseVisitor(config: Record<string, unknown>, model: ModelProperty): Parsed<Visitor> {
  const parsed = parseWith(visitorSchema, config);
  if (!parsed.ok) return parsed;
  const raw = parsed.value;
  const fail = (path: string, message: string): Parsed<Visitor> => ({ ok: false, issues: [{ path, message }] });
  const bits = holdsBits(raw.register);
  const resolved = resolveDataType(raw.dataType, model, bits, raw.limit);
  if (!resolved.ok) return resolved;
  const type = resolved.value;
  if (bits && type === 'string') return fail('dataType', `${raw.register} holds bits: boolean or a number (0/1)`);
  const limit = bits ? 1 : registerCount(type, raw.limit ?? 1);
  if (raw.limit !== undefined && !bits && type !== 'string' && raw.limit < limit) return fail('limit', `${type} needs ${limit} registers, limit is ${raw.limit}`);
  if (raw.offset + limit > ADDRESS_SPACE) return fail('offset', `${raw.offset} + ${limit} registers is past the end of the address space`);
  return {
    ok: true,
    value: { register: raw.register, offset: raw.offset, limit, scale: raw.scale, isSwap: raw.isSwap, isRegisterSwap: raw.isRegisterSwap, dataType: type, min: raw.min, max: raw.max },
  };
}

/** The device's line and slave, and the visitor of each property, or every issue with its place in the manifest. */
export function parseModbus(device: Device, model: DeviceModel): Parsed<DeviceConfig<ModbusDevice, Visitor>> {
  return parseDeviceConfig(device, model, parseDevice, parseVisitor);
}
