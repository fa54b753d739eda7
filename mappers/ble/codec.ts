/** GATT characteristic bytes to property values and back, per the visitor and the DeviceModel type. */
import type { PropertyType } from '../../src/devices/model.js';
import type { PropertyValue } from '../../src/mapperhost/contract.js';
import type { DataConverter, GattVisitor } from './config.js';

export class CodecError extends Error {}

/** Numbers stay exact up to 6 bytes (2^48); larger integers would silently lose digits. */
const MAX_INTEGER_BYTES = 6;

function unsignedBigEndian(bytes: number[]): number {
  if (bytes.length > MAX_INTEGER_BYTES) throw new CodecError(`${bytes.length} bytes are more than the ${MAX_INTEGER_BYTES} a number holds exactly`);
  return bytes.reduce((value, b) => value * 256 + b, 0);
}

/**
 * KubeEdge's dataConverter: the bytes from startIndex to endIndex (in that order, so 1→0 reads a
 * little-endian pair) joined into one integer, shifted, then the operations in order.
 * KubeEdge's mapper joins the bytes' decimal digits and parses them as hex, which only agrees
 * with this for bytes below 10; we join the bytes themselves, as the manifests describe.
 */
export function convertRead(data: Buffer, converter: DataConverter): number {
  const { startIndex, endIndex } = converter;
  const last = Math.max(startIndex, endIndex);
  if (last >= data.length) throw new CodecError(`dataConverter reads byte ${last} but the value has ${data.length} byte${data.length === 1 ? '' : 's'}`);
  const step = startIndex <= endIndex ? 1 : -1;
  const bytes: number[] = [];
  for (let i = startIndex; i !== endIndex + step; i += step) bytes.push(data[i]!);
  let value = unsignedBigEndian(bytes);
  if (converter.signed && bytes[0]! >= 0x80) value -= 2 ** (8 * bytes.length);
  // As KubeEdge: shiftLeft wins when both are given.
  if (converter.shiftLeft > 0) value *= 2 ** converter.shiftLeft;
  else if (converter.shiftRight > 0) value = Math.floor(value / 2 ** converter.shiftRight);
  for (const { operationType, operationValue } of converter.orderOfOperations) {
    if (operationType === 'Add') value += operationValue;
    else if (operationType === 'Subtract') value -= operationValue;
    else if (operationType === 'Multiply') value *= operationValue;
    else value /= operationValue;
  }
  return value;
}

/** The dataWrite key whose bytes these are, so that a written value reads back as itself. */
function dataWriteKey(data: Buffer, dataWrite: Record<string, Buffer> | undefined): string | undefined {
  if (!dataWrite) return undefined;
  return Object.entries(dataWrite).find(([, bytes]) => bytes.equals(data))?.[0];
}

export function decodeValue(data: Buffer, visitor: GattVisitor, type: PropertyType): PropertyValue {
  if (visitor.dataConverter) {
    const value = convertRead(data, visitor.dataConverter);
    return type === 'string' ? String(value) : value;
  }
  const key = dataWriteKey(data, visitor.dataWrite);
  if (key !== undefined) return key;
  if (data.length === 0) throw new CodecError('the characteristic value is empty');
  switch (type) {
    case 'string':
      return data.toString('utf8').replace(/\0+$/, '');
    case 'boolean':
      return data.some((b) => b !== 0);
    case 'bytes':
    case 'stream':
      return data.toString('hex');
    default:
      // GATT values are little-endian (Core spec, Vol 3 Part G 3.3.3).
      return unsignedBigEndian([...data].reverse());
  }
}

function integerBytes(n: number): Buffer {
  if (n >= 0 && n <= 0xff) return Buffer.from([n]);
  const buffer = Buffer.alloc(n >= -0x8000 && n <= 0xffff ? 2 : 4);
  if (buffer.length === 2) {
    if (n < 0) buffer.writeInt16LE(n);
    else buffer.writeUInt16LE(n);
  } else if (n < 0) buffer.writeInt32LE(n);
  else if (n <= 0xffffffff) buffer.writeUInt32LE(n);
  else throw new CodecError(`${n} does not fit in 4 bytes`);
  return buffer;
}

/** The bytes to write: the visitor's dataWrite entry for the value, else the value encoded by the model type. */
export function encodeValue(value: PropertyValue, visitor: GattVisitor, type: PropertyType): Buffer {
  if (visitor.dataWrite) {
    const text = String(value);
    const entry = visitor.dataWrite[text] ?? Object.entries(visitor.dataWrite).find(([key]) => key.toLowerCase() === text.toLowerCase())?.[1];
    if (!entry) throw new CodecError(`${JSON.stringify(text)} is not in dataWrite (${Object.keys(visitor.dataWrite).join(', ')})`);
    return entry;
  }
  switch (type) {
    case 'boolean':
      return Buffer.from([value === true || value === 'true' ? 1 : 0]);
    case 'int':
      return integerBytes(Math.round(Number(value)));
    case 'float':
    case 'double': {
      const buffer = Buffer.alloc(4);
      buffer.writeFloatLE(Number(value));
      return buffer;
    }
    case 'bytes':
    case 'stream': {
      const hex = String(value);
      if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new CodecError(`${JSON.stringify(hex)} is not hex bytes`);
      return Buffer.from(hex, 'hex');
    }
    default:
      return Buffer.from(String(value), 'utf8');
  }
}
