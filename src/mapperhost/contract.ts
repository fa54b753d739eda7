/**
 * The mapper contract: a mapper connects to a device and reads and writes its properties
 * through their visitors. Values cross the contract in their natural JS type; turning them
 * into twin strings by the DeviceModel type is the host's job.
 */
import type { Device, DeviceModel, ModelProperty } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { TransportPool } from './transports.js';

export type PropertyValue = number | boolean | string;

export interface BoundProperty {
  name: string;
  visitor: Record<string, unknown>;
  model: ModelProperty;
}

export interface DeviceConnection {
  read(property: BoundProperty): Promise<PropertyValue>;
  /**
   * Reads the properties due in one collect cycle together, for protocols that can serve
   * several in one request (Modbus registers that lie close together); an Error in the
   * result is that property's failure. Without it, the host reads one property at a time.
   */
  readMany?(properties: BoundProperty[]): Promise<Array<PropertyValue | Error>>;
  write(property: BoundProperty, value: PropertyValue): Promise<void>;
  close(): Promise<void>;
}

/** How a request on a shared transport ended: answered, refused by the device (a Modbus exception), no answer in time, or broken. */
export type RequestOutcome = 'ok' | 'exception' | 'timeout' | 'error';

/** Told about every request a mapper sends on a shared transport; counted by the agent's metrics. */
export interface RequestObserver {
  /** `values`: how many values the answer carried (registers or coils read), 0 for a failure or a write. */
  request(transport: string, outcome: RequestOutcome, values: number): void;
}

export interface MapperContext {
  log: Logger;
  /** The agent's event bus (`mqtt://user:password@host:port`: the bus's connectUrl), for mappers whose devices speak MQTT; never log it. */
  busUrl: string;
  /** Lines, broker connections and controllers that devices share; the host closes them when it stops. */
  transports: TransportPool;
  /** A value the device sent on its own (a notification, an advertisement), reported without waiting for the next read. */
  push(property: string, value: PropertyValue): void;
  /** The connection is gone (the device disconnected): the host closes it and connects again with backoff. */
  lost(error: Error): void;
  /** Where the mapper reports its transport requests, when the agent counts them. */
  requests?: RequestObserver;
}

/** The device cannot be reached now (out of range, powered off): offline, not misconfigured. */
export class DeviceUnreachableError extends Error {}

export interface Mapper {
  /** Protocol names as Device manifests give them (`virtualProtocol`, `modbus`, `bluetooth`, …). */
  readonly protocols: readonly string[];
  /** What is wrong with the device's protocol config and visitors, as `field.path: reason` in its manifest: found when manifests load, not at run time. */
  validate(device: Device, model: DeviceModel): string[];
  /** Opens the device; what it throws is the device's reason: offline for DeviceUnreachableError, else unhealthy. */
  connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection>;
  /** Why `value` cannot be written to the property, when the manifest alone tells (a read-only register, out of range): the API refuses it at once. */
  checkWrite?(device: Device, model: DeviceModel, property: string, value: PropertyValue): string | undefined;
}
