/** EdgeCore's twin validation (edge/pkg/devicetwin/dtcommon/util.go), with its error texts. */
import { TwinError } from './types.js';

const KEY = /^[a-zA-Z0-9-_.,:/@#]{1,128}$/;
const VALUE = /^[a-zA-Z0-9-_.,:/@#]{1,512}$/;
const INT = /^[+-]?\d+$/;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
/** Go's strconv.ParseFloat syntax, less hex floats: the value pattern above forbids `+` and `p` exponents are rare. */
const FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$/i;

export const TWIN_TYPES = ['', 'string', 'int', 'integer', 'float', 'double', 'boolean', 'bytes', 'deleted'] as const;

export function checkTwinKey(key: string): void {
  if (!KEY.test(key)) {
    throw new TwinError(
      400,
      'The key of twin must only include upper or lowercase letters, number, english, and special letter - _ . , : / @ # and the length of key should be less than 128 bytes',
    );
  }
}

export function checkTwinValue(value: string): void {
  if (value !== '' && !VALUE.test(value)) {
    throw new TwinError(
      400,
      'The value of twin must only include upper or lowercase letters, number, english, and special letter - _ . , : / @ # and the length of value should be less than 512 bytes',
    );
  }
}

function isInt64(value: string): boolean {
  if (!INT.test(value)) return false;
  const n = BigInt(value);
  return n >= INT64_MIN && n <= INT64_MAX;
}

/** `ValidateValue(type, value)`: the value must parse as the twin's type. */
export function checkValueType(type: string, value: string): void {
  switch (type) {
    case '':
    case 'string':
    case 'bytes':
    case 'deleted':
      return;
    case 'int':
    case 'integer':
      if (!isInt64(value)) throw new TwinError(400, 'the value is not int or integer');
      return;
    case 'float':
    case 'double':
      if (!FLOAT.test(value)) throw new TwinError(400, 'the value is not float');
      return;
    case 'boolean':
      if (value !== 'true' && value !== 'false') throw new TwinError(400, 'the bool value must be true or false');
      return;
    default:
      throw new TwinError(400, 'the value type is not allowed');
  }
}
