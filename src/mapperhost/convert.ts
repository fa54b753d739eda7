/** Conversion between mapper values and twin strings, by the DeviceModel property type. */
import type { PropertyType } from '../devices/model.js';
import type { PropertyValue } from './contract.js';

/** Decimal notation only: twin values may not contain `+`, so `1e+21` is not an option. */
function decimal(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  return n.toFixed(6).replace(/\.?0+$/, '');
}

export class ConversionError extends Error {}

export function toTwinValue(value: PropertyValue, type: PropertyType): string {
  switch (type) {
    case 'int': {
      const n = typeof value === 'boolean' ? Number(value) : Number(value);
      if (!Number.isFinite(n)) throw new ConversionError(`${JSON.stringify(value)} is not an int`);
      return decimal(Math.round(n));
    }
    case 'float':
    case 'double': {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new ConversionError(`${JSON.stringify(value)} is not a float`);
      return decimal(n);
    }
    case 'boolean':
      if (typeof value === 'string') return String(value === 'true' || value === '1' || value.toUpperCase() === 'ON');
      return String(Boolean(value));
    default:
      return String(value);
  }
}

export function fromTwinValue(value: string, type: PropertyType): PropertyValue {
  switch (type) {
    case 'int':
    case 'float':
    case 'double': {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) throw new ConversionError(`${JSON.stringify(value)} is not a number`);
      return type === 'int' ? Math.round(n) : n;
    }
    case 'boolean':
      if (value !== 'true' && value !== 'false') throw new ConversionError(`${JSON.stringify(value)} is not true or false`);
      return value === 'true';
    default:
      return value;
  }
}
