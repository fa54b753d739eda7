/**
 * A manifest's JSON onto a DMI message as EdgeCore puts it there: it marshals the CRD object and
 * unmarshals it into the generated Go structs, so keys match fields case-insensitively
 * (`hostName` fills `hostname`), unknown keys drop, and a value of the wrong kind fails the whole
 * object. `map<string, Any>` values (configData, anomaly detection) are packed as dataToAny packs them.
 */
import protobuf from 'protobufjs';
import { toAny } from './proto.js';

const NUMERIC = new Set(['double', 'float', 'int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

function scalar(type: string, value: unknown, path: string): unknown {
  const ok = type === 'string' ? typeof value === 'string' : type === 'bool' ? typeof value === 'boolean' : type === 'bytes' ? typeof value === 'string' : NUMERIC.has(type) && typeof value === 'number';
  if (!ok) throw new Error(`${path}: cannot put ${JSON.stringify(value)} into a ${type} field`);
  return type === 'bytes' ? Buffer.from(value as string, 'base64') : value;
}

function single(field: protobuf.Field, value: unknown, path: string): unknown {
  const type = field.resolvedType;
  if (type instanceof protobuf.Type) return type.fullName === '.google.protobuf.Any' ? toAny(value) : fromGoJson(type, value, path);
  if (type instanceof protobuf.Enum) return value;
  return scalar(field.type, value, path);
}

export function fromGoJson(type: protobuf.Type, json: unknown, path: string): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: expected an object`);
  const fields = new Map(type.fieldsArray.map((field) => [field.name.toLowerCase(), field.resolve()]));
  const message: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const field = fields.get(key.toLowerCase());
    if (!field || value === null || value === undefined) continue;
    const at = `${path}.${key}`;
    if (field instanceof protobuf.MapField) {
      if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${at}: expected an object`);
      message[field.name] = Object.fromEntries(Object.entries(value).map(([k, item]) => [k, single(field, item, `${at}.${k}`)]));
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${at}: expected a list`);
      message[field.name] = value.map((item, index) => single(field, item, `${at}.${index}`));
    } else {
      message[field.name] = single(field, value, at);
    }
  }
  return message;
}
