/**
 * Modbus device and visitor configuration from KubeEdge manifests: v1beta1 `configData`
 * (communicateMode TCP/RTU) and v1alpha2 `modbus` plus `common.tcp` / `common.com` blocks.
 */
import * as v from 'valibot';
import type { Device, ModelProperty } from '../../src/devices/model.js';
import { parseWith } from '../../src/schema.js';
import { registerCount } from './codec.js';

export type RegisterType = 'CoilRegister' | 'DiscreteInputRegister' | 'HoldingRegister' | 'InputRegister';
export type DataType = 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64' | 'boolean' | 'string';

export type Transport =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'rtu'; path: string; baudRate: number; dataBits: 5 | 6 | 7 | 8; parity: 'none' | 'even' | 'odd'; stopBits: 1 | 2 };

export interface ModbusDevice {
  transport: Transport;
  slaveId: number;
  timeoutMs: number;
}

export interface Visitor {
  register: RegisterType;
  offset: number;
  /** Registers (or bits, for coils and discrete inputs) the value spans. */
  limit: number;
  scale: number;
  isSwap: boolean;
  isRegisterSwap: boolean;
  dataType: DataType;
  min?: number;
  max?: number;
}

export class ModbusConfigError extends Error {}

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

function fail(where: string, issues: Array<{ path: string; message: string }>): never {
  throw new ModbusConfigError(`${where}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
}

export function parseDevice(device: Device): ModbusDevice {
  const { config, common: alpha2 } = device.protocol;
  if (alpha2) {
    const parsedCommon = parseWith(alpha2Common, alpha2);
    if (!parsedCommon.ok) fail(`device ${device.id} protocol.common`, parsedCommon.issues);
    const parsed = parseWith(v.looseObject(common), config);
    if (!parsed.ok) fail(`device ${device.id} protocol.modbus`, parsed.issues);
    const c = parsedCommon.value as { tcp: { ip: string; port: number } } | { com: { serialPort: string; baudRate: number; dataBits: 5 | 6 | 7 | 8; parity: 'none' | 'even' | 'odd'; stopBits: 1 | 2 } };
    const transport: Transport =
      'tcp' in c ? { kind: 'tcp', host: c.tcp.ip, port: c.tcp.port } : { kind: 'rtu', path: c.com.serialPort, baudRate: c.com.baudRate, dataBits: c.com.dataBits, parity: c.com.parity, stopBits: c.com.stopBits };
    return { transport, slaveId: parsed.value.slaveID, timeoutMs: parsed.value.timeout ?? 1000 };
  }
  const parsed = parseWith(beta1Protocol, config);
  if (!parsed.ok) fail(`device ${device.id} protocol.configData`, parsed.issues);
  const c = parsed.value;
  const transport: Transport =
    c.communicateMode === 'TCP'
      ? { kind: 'tcp', host: c.ip, port: c.port }
      : { kind: 'rtu', path: c.serialPort, baudRate: c.baudRate, dataBits: c.dataBits, parity: c.parity, stopBits: c.stopBits };
  return { transport, slaveId: c.slaveID, timeoutMs: c.timeout ?? 1000 };
}

/** Without a dataType, KubeEdge's modbus mapper reads by the model type and the register count. */
function defaultDataType(register: RegisterType, model: ModelProperty, limit: number | undefined): DataType {
  if (register === 'CoilRegister' || register === 'DiscreteInputRegister' || model.type === 'boolean') return 'boolean';
  if (model.type === 'string') return 'string';
  if (model.type === 'float' || model.type === 'double') return limit === 4 ? 'float64' : limit === 2 ? 'float32' : 'int16';
  return limit === 2 ? 'int32' : 'int16';
}

export function parseVisitor(deviceId: string, property: { name: string; visitor: Record<string, unknown>; model: ModelProperty }): Visitor {
  const parsed = parseWith(visitorSchema, property.visitor);
  if (!parsed.ok) fail(`device ${deviceId} property ${property.name} visitor`, parsed.issues);
  const raw = parsed.value;
  const type = raw.dataType ?? defaultDataType(raw.register, property.model, raw.limit);
  const bits = raw.register === 'CoilRegister' || raw.register === 'DiscreteInputRegister';
  if (bits && type !== 'boolean') fail(`device ${deviceId} property ${property.name} visitor`, [{ path: 'dataType', message: `${raw.register} holds bits: only boolean` }]);
  const limit = bits ? 1 : registerCount(type, raw.limit ?? 1);
  if (raw.limit !== undefined && !bits && type !== 'string' && raw.limit < limit) {
    fail(`device ${deviceId} property ${property.name} visitor`, [{ path: 'limit', message: `${type} needs ${limit} registers, limit is ${raw.limit}` }]);
  }
  if (raw.offset + limit > ADDRESS_SPACE) {
    fail(`device ${deviceId} property ${property.name} visitor`, [{ path: 'offset', message: `${raw.offset} + ${limit} registers is past the end of the address space` }]);
  }
  return { register: raw.register, offset: raw.offset, limit, scale: raw.scale, isSwap: raw.isSwap, isRegisterSwap: raw.isRegisterSwap, dataType: type, min: raw.min, max: raw.max };
}

export function transportKey(t: Transport): string {
  return t.kind === 'tcp' ? `tcp://${t.host}:${t.port}` : `rtu://${t.path}`;
}
