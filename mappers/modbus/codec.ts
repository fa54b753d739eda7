/** Register words ⇄ values, with KubeEdge's isSwap (bytes in a word) and isRegisterSwap (word order). */
import type { PropertyValue } from '../../src/mapperhost/contract.js';
import type { Visitor } from './types.js';

function toBuffer(words: number[], visitor: Visitor): Buffer {
  const ordered = visitor.isRegisterSwap ? [...words].reverse() : words;
  const buffer = Buffer.alloc(ordered.length * 2);
  ordered.forEach((word, i) => buffer.writeUInt16BE(word & 0xffff, i * 2));
  if (visitor.isSwap) buffer.swap16();
  return buffer;
}

function toWords(buffer: Buffer, visitor: Visitor): number[] {
  if (visitor.isSwap) buffer.swap16();
  const words = Array.from({ length: buffer.length / 2 }, (_, i) => buffer.readUInt16BE(i * 2));
  return visitor.isRegisterSwap ? words.reverse() : words;
}

type NumericType = Exclude<Visitor['dataType'], 'boolean' | 'string'>;

/** Per numeric type: its size, how it is read and written big-endian, and the integer range a write must fit. */
const NUMERIC: Record<NumericType, { bytes: number; read(b: Buffer): number; write(b: Buffer, n: number): void; range?: [number, number] }> = {
  int16: { bytes: 2, read: (b) => b.readInt16BE(0), write: (b, n) => b.writeInt16BE(n), range: [-32768, 32767] },
  uint16: { bytes: 2, read: (b) => b.readUInt16BE(0), write: (b, n) => b.writeUInt16BE(n), range: [0, 65535] },
  int32: { bytes: 4, read: (b) => b.readInt32BE(0), write: (b, n) => b.writeInt32BE(n), range: [-(2 ** 31), 2 ** 31 - 1] },
  uint32: { bytes: 4, read: (b) => b.readUInt32BE(0), write: (b, n) => b.writeUInt32BE(n), range: [0, 2 ** 32 - 1] },
  float32: { bytes: 4, read: (b) => b.readFloatBE(0), write: (b, n) => b.writeFloatBE(n) },
  float64: { bytes: 8, read: (b) => b.readDoubleBE(0), write: (b, n) => b.writeDoubleBE(n) },
};

/** Registers a value of the type spans. */
export function registerCount(type: Visitor['dataType'], stringLimit: number): number {
  if (type === 'boolean') return 1;
  if (type === 'string') return stringLimit;
  return NUMERIC[type].bytes / 2;
}

/** Decodes the words (or the bit) a visitor points at; numbers are scaled. */
export function decode(visitor: Visitor, words: number[] | boolean[]): PropertyValue {
  if (visitor.dataType === 'boolean') return typeof words[0] === 'boolean' ? words[0] : words[0] !== 0;
  const buffer = toBuffer(words as number[], visitor);
  if (visitor.dataType === 'string') return buffer.toString('latin1').replace(/\0+$/, '');
  return NUMERIC[visitor.dataType].read(buffer) * visitor.scale;
}

export class ModbusValueError extends Error {}

/** Encodes a value for writing: unscaled, range-checked, in the visitor's byte and word order. */
export function encode(visitor: Visitor, value: PropertyValue): number[] | boolean {
  if (visitor.dataType === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (typeof value === 'number') return value !== 0;
    return ['true', '1', 'on'].includes(value.toLowerCase());
  }
  if (visitor.dataType === 'string') {
    const buffer = Buffer.alloc(visitor.limit * 2);
    buffer.write(String(value), 'latin1');
    return toWords(buffer, visitor);
  }
  const n = Number(value);
  if (!Number.isFinite(n)) throw new ModbusValueError(`${JSON.stringify(value)} is not a number`);
  if ((visitor.min !== undefined && n < visitor.min) || (visitor.max !== undefined && n > visitor.max)) {
    throw new ModbusValueError(`${n} is outside [${visitor.min ?? '-∞'}, ${visitor.max ?? '∞'}]`);
  }
  const codec = NUMERIC[visitor.dataType];
  const unscaled = n / visitor.scale;
  const written = codec.range ? Math.round(unscaled) : unscaled;
  if (codec.range && (written < codec.range[0] || written > codec.range[1])) {
    throw new ModbusValueError(`${n} does not fit ${visitor.dataType} at scale ${visitor.scale}`);
  }
  const buffer = Buffer.alloc(codec.bytes);
  codec.write(buffer, written);
  return toWords(buffer, visitor);
}
