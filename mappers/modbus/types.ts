/** What a Modbus device and its visitors are once parsed: the codec, the planner and the line work on these. */

export type RegisterType = 'CoilRegister' | 'DiscreteInputRegister' | 'HoldingRegister' | 'InputRegister';
export type DataType = 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'float32' | 'float64' | 'boolean' | 'string';

export type Transport =
  | { kind: 'tcp'; host: string; port: number }
  /** RTU frames over a TCP socket: serial gateways that pass the bytes through instead of translating to Modbus TCP. */
  | { kind: 'rtu-over-tcp'; host: string; port: number }
  | { kind: 'rtu'; path: string; baudRate: number; dataBits: 5 | 6 | 7 | 8; parity: 'none' | 'even' | 'odd'; stopBits: 1 | 2 };

export interface ModbusDevice {
  transport: Transport;
  slaveId: number;
  timeoutMs: number;
  /** Quiet time the slave needs on the line between the last answer and the next request. */
  delayMs: number;
  /** FC16 (write multiple registers) even for one register: devices that refuse FC06. */
  writeMultiple: boolean;
}

export interface Visitor {
  register: RegisterType;
  offset: number;
  /** Registers (or bits, for coils and discrete inputs) the value spans. */
  limit: number;
  scale: number;
  isSwap: boolean;
  isRegisterSwap: boolean;
  /** On coils and discrete inputs a numeric type reads the bit as 0 or 1. */
  dataType: DataType;
  min?: number;
  max?: number;
}

/** The endpoint a line talks to: `tcp://host:port`, `rtu+tcp://host:port` or `rtu://serial-port`. */
export function transportKey(t: Transport): string {
  if (t.kind === 'rtu') return `rtu://${t.path}`;
  return `${t.kind === 'tcp' ? 'tcp' : 'rtu+tcp'}://${t.host}:${t.port}`;
}

/** Coils and discrete inputs hold bits, the other two tables 16-bit words. */
export function holdsBits(register: RegisterType): boolean {
  return register === 'CoilRegister' || register === 'DiscreteInputRegister';
}
