/**
 * Calls to a mapper's DeviceMapperService at the socket it registered, as EdgeCore's DMI client
 * makes them: a fresh connection per call (a restarted mapper is reached at once), closed after it.
 */
import { credentials, makeGenericClientConstructor, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { deviceMapperService } from './proto.js';

const MapperClient = makeGenericClientConstructor(deviceMapperService, 'DeviceMapperService');

export type MapperCall = 'RegisterDevice' | 'RemoveDevice' | 'UpdateDevice' | 'CreateDeviceModel' | 'UpdateDeviceModel' | 'RemoveDeviceModel';

/** A call the mapper did not answer, or answered with an error; `message` says which, with the mapper's own words. */
export class MapperCallError extends Error {
  /** The gRPC status code. */
  readonly code: number;

  constructor(call: MapperCall, address: string, cause: ServiceError) {
    super(`${call} at ${address}: ${cause.details || cause.message}`);
    this.code = cause.code;
  }
}

/** Makes the call; `signal` cancels it (the agent stops). */
export function callMapper(address: string, call: MapperCall, request: object, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const client = new MapperClient(`unix:${address}`, credentials.createInsecure());
  return new Promise<void>((resolve, reject) => {
    const method = client[call] as (request: object, options: { deadline: Date }, callback: (error: ServiceError | null) => void) => ClientUnaryCall;
    const pending = method.call(client, request, { deadline: new Date(Date.now() + timeoutMs) }, (error) => (error ? reject(new MapperCallError(call, address, error)) : resolve()));
    signal.addEventListener('abort', () => pending.cancel(), { once: true });
  }).finally(() => client.close());
}
