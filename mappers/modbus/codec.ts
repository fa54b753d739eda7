/** Register words ⇄ values, with KubeEdge's isSwap (bytes in a word) and isRegisterSwap (word order). */
import type { PropertyValue } from '../../src/mapperhost/contract.js';
import type { Visitor } from './config.js';

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

/** Decodes the words (or the bit) a visitor points at; numbers are scaled. */
export function decode(visitor: Visitor, words: number[] | boolean[]): PropertyValue {
  if (visitor.dataType === 'boolean') return typeof words[0] === 'boolean' ? words[0] : words[0] !== 0;
  const buffer = toBuffer(words as number[], visitor);
  if (visitor.dataType === 'string') return buffer.toString('latin1').replace(/\0+$/, '');
  const raw = {
    int16: () => buffer.readInt16BE(0),
    uint16: () => buffer.readUInt16BE(0),
    int32: () => buffer.readInt32BE(0),
    uint32: () => buffer.readUInt32BE(0),
    float32: () => buffer.readFloatBE(0),
    float64: () => buffer.readDoubleBE(0),
  }[visitor.dataType]();
  return raw * visitor.scale;
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
  const unscaled = n / visitor.scale;
  const integer = Math.round(unscaled);
  const buffer = Buffer.alloc(visitor.dataType === 'float64' ? 8 : visitor.dataType.endsWith('32') ? 4 : 2);
  const ranges: Record<string, [number, number]> = { int16: [-32768, 32767], uint16: [0, 65535], int32: [-(2 ** 31), 2 ** 31 - 1], uint32: [0, 2 ** 32 - 1] };
  const range = ranges[visitor.dataType];
  if (range && (integer < range[0] || integer > range[1])) throw new ModbusValueError(`${n} does not fit ${visitor.dataType} at scale ${visitor.scale}`);
  switch (visitor.dataType) {
    case 'int16':
      buffer.writeInt16BE(integer);
      break;
    case 'uint16':
      buffer.writeUInt16BE(integer);
      break;
    case 'int32':
      buffer.writeInt32BE(integer);
      break;
    case 'uint32':
      buffer.writeUInt32BE(integer);
      break;
    case 'float32':
      buffer.writeFloatBE(unscaled);
      break;
    case 'float64':
      buffer.writeDoubleBE(unscaled);
      break;
  }
  return toWords(buffer, visitor);
}
