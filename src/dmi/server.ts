/**
 * The DeviceManagerService mappers call, answering as EdgeCore's dmiserver does: registration
 * records where the mapper listens and answers with its devices and models; status reports go
 * into the twin the way an MQTT `twin/update` does, states the way `state/update` does. Every
 * answer follows the commit of what it answers.
 */
import { status, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import * as v from 'valibot';
import type { Logger } from '../log.js';
import { deviceId } from '../devices/model.js';
import type { Twins } from '../twin/twins.js';
import { AgentError } from '../errors.js';
import type { MapperRegistry } from './registry.js';
import type { TokenBucket } from '../rate-limit.js';

const text = v.optional(v.string(), '');
const twinValue = v.nullish(v.object({ value: text }));

const registerRequest = v.object({
  withData: v.optional(v.boolean(), false),
  mapper: v.nullish(v.object({ name: text, version: text, api_version: text, protocol: text, address: v.optional(v.instance(Buffer)), state: text })),
});
const statusRequest = v.object({
  deviceName: text,
  deviceNamespace: text,
  reportedDevice: v.nullish(v.object({ twins: v.optional(v.array(v.object({ propertyName: text, observedDesired: twinValue, reported: twinValue })), []) })),
});
const statesRequest = v.object({ deviceName: text, deviceNamespace: text, state: text });

/** A refusal the mapper sees as the call's error, as EdgeCore words it. */
class DmiRefusal extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export interface Registration {
  deviceList: object[];
  modelList: object[];
}

export interface DeviceManagerDeps {
  registry: MapperRegistry;
  twins: Twins;
  limit: TokenBucket;
  /** Records the mapper and answers with its devices and models (when asked `withData`); resolves once committed. */
  register(mapper: { name: string; version: string; apiVersion: string; protocol: string; address: string }, withData: boolean): Promise<Registration>;
  log: Logger;
}

type Handler<Request, Response> = (request: Request) => Promise<Response>;

/** One unary method: rate-limited, its request parsed by `schema`, errors answered with their gRPC code. */
function unary<S extends v.GenericSchema, Response>(name: string, schema: S, deps: DeviceManagerDeps, handle: Handler<v.InferOutput<S>, Response>) {
  return (call: ServerUnaryCall<unknown, Response>, callback: sendUnaryData<Response>) => {
    const answer = async (): Promise<Response> => {
      if (!deps.limit.take()) throw new DmiRefusal(status.RESOURCE_EXHAUSTED, `fail to ${name} because of too many request`);
      const parsed = v.safeParse(schema, call.request);
      if (!parsed.success) throw new DmiRefusal(status.INVALID_ARGUMENT, `invalid ${name} request: ${parsed.issues[0]!.message}`);
      return handle(parsed.output);
    };
    answer().then(
      (response) => callback(null, response),
      (error: unknown) => {
        const code = error instanceof DmiRefusal ? error.code : error instanceof AgentError && error.status < 500 ? status.INVALID_ARGUMENT : status.INTERNAL;
        if (code === status.INTERNAL) deps.log.error({ err: error, call: name }, 'DMI call failed');
        callback({ code, details: (error as Error).message });
      },
    );
  };
}

export function deviceManagerHandlers(deps: DeviceManagerDeps): UntypedServiceImplementation {
  const { twins } = deps;
  return {
    MapperRegister: unary('register mapper', registerRequest, deps, async ({ withData, mapper }) => {
      const name = mapper?.name ?? '';
      if (!mapper?.protocol) throw new DmiRefusal(status.INVALID_ARGUMENT, `fail to register mapper ${name} because the protocol is nil`);
      const address = mapper.address?.toString() ?? '';
      if (!address) throw new DmiRefusal(status.INVALID_ARGUMENT, `fail to register mapper ${name} because the address is empty`);
      const registration = await deps.register({ name, version: mapper.version, apiVersion: mapper.api_version, protocol: mapper.protocol, address }, withData);
      return withData ? registration : {};
    }),

    ReportDeviceStatus: unary('report device status', statusRequest, deps, async ({ deviceName, deviceNamespace, reportedDevice }) => {
      if (!reportedDevice || reportedDevice.twins.length === 0) throw new DmiRefusal(status.INVALID_ARGUMENT, 'ReportDeviceStatusRequest does not have twin data');
      const id = deviceId(deviceNamespace, deviceName);
      // One twin update per reported twin, as EdgeCore sends one twin/update each. The mapper's
      // observedDesired (what it last wrote, usually empty) is not a desired value: the twin's
      // desired values are set by the API, MQTT and the cloud, never by the mapper's echo.
      for (const twin of reportedDevice.twins) twins.update(id, { [twin.propertyName]: { actual: { value: twin.reported?.value ?? '' } } }, 'mapper');
      await twins.flushed();
      return {};
    }),

    ReportDeviceStates: unary('report device states', statesRequest, deps, async ({ deviceName, deviceNamespace, state }) => {
      if (!state || !deviceName) throw new DmiRefusal(status.INVALID_ARGUMENT, 'ReportDeviceStatesRequest is invalid data');
      twins.setState(deviceId(deviceNamespace, deviceName), state, 'mapper');
      await twins.flushed();
      return {};
    }),
  };
}
