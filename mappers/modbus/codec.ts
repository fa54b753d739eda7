/** Register words ⇄ values, with KubeEdge's isSwap (bytes in a word) and isRegisterSwap (word order). */
import type { PropertyValue } from '../../src/mapperhost/contract.js';
import { holdsBits, type Visitor } from './types.js';

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

type WideType = 'int64' | 'uint64';
type NumericType = Exclude<Visitor['dataType'], 'boolean' | 'string' | WideType>;

/** Per numeric type: its size, how it is read and written big-endian, and the integer range a write must fit. */
const NUMERIC: Record<NumericType, { bytes: number; read(b: Buffer): number; write(b: Buffer, n: number): void; range?: [number, number] }> = {
  int16: { bytes: 2, read: (b) => b.readInt16BE(0), write: (b, n) => b.writeInt16BE(n), range: [-32768, 32767] },
  uint16: { bytes: 2, read: (b) => b.readUInt16BE(0), write: (b, n) => b.writeUInt16BE(n), range: [0, 65535] },
  int32: { bytes: 4, read: (b) => b.readInt32BE(0), write: (b, n) => b.writeInt32BE(n), range: [-(2 ** 31), 2 ** 31 - 1] },
  uint32: { bytes: 4, read: (b) => b.readUInt32BE(0), write: (b, n) => b.writeUInt32BE(n), range: [0, 2 ** 32 - 1] },
  float32: { bytes: 4, read: (b) => b.readFloatBE(0), write: (b, n) => b.writeFloatBE(n) },
  float64: { bytes: 8, read: (b) => b.readDoubleBE(0), write: (b, n) => b.writeDoubleBE(n) },
};

/** 64-bit integers go through BigInt: past 2^53 a JS number would lose the low digits of a counter. */
const WIDE: Record<WideType, { read(b: Buffer): bigint; write(b: Buffer, n: bigint): void; range: [bigint, bigint] }> = {
  int64: { read: (b) => b.readBigInt64BE(0), write: (b, n) => b.writeBigInt64BE(n), range: [-(2n ** 63n), 2n ** 63n - 1n] },
  uint64: { read: (b) => b.readBigUInt64BE(0), write: (b, n) => b.writeBigUInt64BE(n), range: [0n, 2n ** 64n - 1n] },
};

const isWide = (type: Visitor['dataType']): type is WideType => type in WIDE;

/** Registers a value of the type spans. */
export function registerCount(type: Visitor['dataType'], stringLimit: number): number {
  if (type === 'boolean') return 1;
  if (type === 'string') return stringLimit;
  if (isWide(type)) return 4;
  return NUMERIC[type].bytes / 2;
}

/** Decodes the words (or the bit) a visitor points at; numbers are scaled. */
export function decode(visitor: Visitor, words: number[] | boolean[]): PropertyValue {
  const first = words[0];
  // A bit read with a numeric type is 0 or 1, as KubeEdge's mappers read an `int` coil.
  if (typeof first === 'boolean') return visitor.dataType === 'boolean' ? first : Number(first);
  if (visitor.dataType === 'boolean') return first !== 0;
  const buffer = toBuffer(words as number[], visitor);
  if (visitor.dataType === 'string') return buffer.toString('latin1').replace(/\0+$/, '');
  if (isWide(visitor.dataType)) {
    const big = WIDE[visitor.dataType].read(buffer);
    // Unscaled and past 2^53: the exact digits, as text (the twin holds text anyway).
    if (visitor.scale === 1) return Number.isSafeInteger(Number(big)) ? Number(big) : big.toString();
    return Number(big) * visitor.scale;
  }
  return NUMERIC[visitor.dataType].read(buffer) * visitor.scale;
}

export class ModbusValueError extends Error {}

/** Encodes a value for writing: unscaled, range-checked, in the visitor's byte and word order. */
export function encode(visitor: Visitor, value: PropertyValue): number[] | boolean {
  if (visitor.dataType === 'boolean' || holdsBits(visitor.register)) {
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
  if (isWide(visitor.dataType)) return toWords(encodeWide(visitor, visitor.dataType, value, n), visitor);
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

function encodeWide(visitor: Visitor, type: WideType, value: PropertyValue, n: number): Buffer {
  const text = String(value).trim();
  // An unscaled integer is taken digit for digit: Number() would round it past 2^53.
  const written = visitor.scale === 1 && /^-?\d+$/.test(text) ? BigInt(text) : BigInt(Math.round(n / visitor.scale));
  const [low, high] = WIDE[type].range;
  if (written < low || written > high) throw new ModbusValueError(`${text} does not fit ${type} at scale ${visitor.scale}`);
  const buffer = Buffer.alloc(8);
  WIDE[type].write(buffer, written);
  return buffer;
}
