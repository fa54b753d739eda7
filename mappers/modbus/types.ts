/** What a Modbus device and its visitors are once parsed: the codec, the planner and the line work on these. */

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

/** The endpoint a line talks to: `tcp://host:port` or `rtu://serial-port`. */
export function transportKey(t: Transport): string {
  return t.kind === 'tcp' ? `tcp://${t.host}:${t.port}` : `rtu://${t.path}`;
}
