/**
 * Modbus device and visitor configuration from KubeEdge manifests: v1beta1 `configData`
 * (communicateMode TCP/RTU) and v1alpha2 `modbus` plus `common.tcp` / `common.com` blocks.
 */
import * as v from 'valibot';
import type { Device, DeviceModel, ModelProperty } from '../../src/devices/model.js';
import { at, parseAt, parseDeviceConfig, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { parseWith, type Parsed } from '../../src/schema.js';
import { registerCount } from './codec.js';
import type { DataType, ModbusDevice, RegisterType, Transport, Visitor } from './types.js';

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
  serialPort: v.pipe(v.string(), v.minLength(1)),
  baudRate: v.optional(integer(50, 4_000_000), 9600),
  dataBits: v.optional(v.pipe(integer(5, 8), v.transform((n) => n as 5 | 6 | 7 | 8)), 8),
  parity: v.optional(parity, 'none'),
  stopBits: v.optional(v.pipe(integer(1, 2), v.transform((n) => n as 1 | 2)), 1),
};
const common = { slaveID: v.optional(integer(0, 247), 1), timeout: v.optional(integer(10, 60_000)) };

const beta1Protocol = v.variant('communicateMode', [
  v.looseObject({ communicateMode: v.literal('TCP'), ip: v.pipe(v.string(), v.minLength(1)), port: v.optional(integer(1, 65535), 502), ...common }),
  v.looseObject({ communicateMode: v.literal('RTU'), ...serialFields, ...common }),
]);
const alpha2Common = v.union(
  [
    v.looseObject({ tcp: v.looseObject({ ip: v.pipe(v.string(), v.minLength(1)), port: v.optional(integer(1, 65535), 502) }) }),
    v.looseObject({ com: v.looseObject(serialFields) }),
  ],
  'needs common.tcp (ip, port) or common.com (serialPort, …)',
);

const registerType = v.picklist(['CoilRegister', 'DiscreteInputRegister', 'HoldingRegister', 'InputRegister'], 'must be CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister');
const dataType = v.pipe(
  v.string(),
  v.transform((t) => ({ int: 'int16', float: 'float32', double: 'float64', bool: 'boolean' })[t.toLowerCase()] ?? t.toLowerCase()),
  v.picklist(['int16', 'uint16', 'int32', 'uint32', 'float32', 'float64', 'boolean', 'string'], 'must be int16, uint16, int32, uint32, float32, float64, boolean or string'),
);
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

type Serial = { serialPort: string; baudRate: number; dataBits: 5 | 6 | 7 | 8; parity: 'none' | 'even' | 'odd'; stopBits: 1 | 2 };
const serialTransport = (c: Serial): Transport => ({ kind: 'rtu', path: c.serialPort, baudRate: c.baudRate, dataBits: c.dataBits, parity: c.parity, stopBits: c.stopBits });

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
    const transport: Transport = 'tcp' in c ? { kind: 'tcp', host: c.tcp.ip, port: c.tcp.port } : serialTransport(c.com);
    return { ok: true, value: { transport, slaveId: parsed.value.slaveID, timeoutMs: parsed.value.timeout ?? 1000 } };
  }
  const parsed = parseAt(beta1Protocol, config, fields.protocol);
  if (!parsed.ok) return parsed;
  const c = parsed.value;
  const transport: Transport = c.communicateMode === 'TCP' ? { kind: 'tcp', host: c.ip, port: c.port } : serialTransport(c);
  return { ok: true, value: { transport, slaveId: c.slaveID, timeoutMs: c.timeout ?? 1000 } };
}

/** Without a dataType, KubeEdge's modbus mapper reads by the model type and the register count. */
function defaultDataType(register: RegisterType, model: ModelProperty, limit: number | undefined): DataType {
  if (register === 'CoilRegister' || register === 'DiscreteInputRegister' || model.type === 'boolean') return 'boolean';
  if (model.type === 'string') return 'string';
  if (model.type === 'float' || model.type === 'double') return limit === 4 ? 'float64' : limit === 2 ? 'float32' : 'int16';
  return limit === 2 ? 'int32' : 'int16';
}

/** One visitor, with the checks across its fields (a register type's width, the address space). */
function parseVisitor(config: Record<string, unknown>, model: ModelProperty): Parsed<Visitor> {
  const parsed = parseWith(visitorSchema, config);
  if (!parsed.ok) return parsed;
  const raw = parsed.value;
  const fail = (path: string, message: string): Parsed<Visitor> => ({ ok: false, issues: [{ path, message }] });
  const type = raw.dataType ?? defaultDataType(raw.register, model, raw.limit);
  const bits = raw.register === 'CoilRegister' || raw.register === 'DiscreteInputRegister';
  if (bits && type !== 'boolean') return fail('dataType', `${raw.register} holds bits: only boolean`);
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
