/**
 * KubeEdge's DMI v1beta1 protocol (api.proto beside this file, copied unchanged from
 * kubeedge/api `apis/dmi/v1beta1`), as grpc-js service definitions built from protobufjs types:
 * one parser for the wire, and the wrapper types that `google.protobuf.Any` values carry.
 */
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const root = new protobuf.Root();
// The well-known types protobufjs bundles; api.proto imports any.proto from them.
root.loadSync(fileURLToPath(new URL('./api.proto', import.meta.url)), { keepCase: true });
root.addJSON(protobuf.common.get('google/protobuf/wrappers.proto')!.nested!);
root.resolveAll();

/** Messages decode as plain objects with the proto's field names, int64 as strings, absent fields with their defaults. */
const DECODE: protobuf.IConversionOptions = { longs: String, bytes: Buffer, defaults: true, arrays: true, objects: true };

export function messageType(name: string): protobuf.Type {
  return root.lookupType(name);
}

function serviceDefinition(name: string): ServiceDefinition {
  const service = root.lookupService(`v1beta1.${name}`);
  return Object.fromEntries(
    service.methodsArray.map((method) => {
      const request = root.lookupType(method.requestType);
      const response = root.lookupType(method.responseType);
      return [
        method.name,
        {
          path: `/v1beta1.${name}/${method.name}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: (message: object) => Buffer.from(request.encode(request.fromObject(message)).finish()),
          requestDeserialize: (bytes: Buffer) => request.toObject(request.decode(bytes), DECODE),
          responseSerialize: (message: object) => Buffer.from(response.encode(response.fromObject(message)).finish()),
          responseDeserialize: (bytes: Buffer) => response.toObject(response.decode(bytes), DECODE),
        },
      ];
    }),
  );
}

/** What EdgeCore serves to mappers. */
export const deviceManagerService = serviceDefinition('DeviceManagerService');
/** What a mapper serves to EdgeCore. */
export const deviceMapperService = serviceDefinition('DeviceMapperService');

export interface AnyValue {
  type_url: string;
  value: Buffer;
}

function wrap(type: string, value: unknown): AnyValue {
  const wrapper = root.lookupType(`google.protobuf.${type}`);
  return { type_url: `type.googleapis.com/google.protobuf.${type}`, value: Buffer.from(wrapper.encode(wrapper.fromObject({ value })).finish()) };
}

/**
 * A config value as EdgeCore's dataToAny (dtcommon/util.go) packs it: strings as StringValue,
 * booleans as BoolValue, numbers as FloatValue (they arrive from JSON as float64), nothing else.
 */
export function toAny(value: unknown): AnyValue {
  if (typeof value === 'string') return wrap('StringValue', value);
  if (typeof value === 'boolean') return wrap('BoolValue', value);
  if (typeof value === 'number') return wrap('FloatValue', value);
  throw new Error(`${value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value} does not support converting to any`);
}
