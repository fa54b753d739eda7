/**
 * What the mapper host tells about its devices' reads, for whoever counts them (the agent's
 * metrics). The host only calls these; it never formats or keeps figures itself, so a host
 * without an observer costs nothing.
 */
import type { RequestObserver } from './contract.js';

/** One device's reads, as its runner sees them. */
export interface DeviceObserver {
  /** A collect cycle read `count` properties, `failed` of which ended in an error, in `seconds` (the whole group's read). */
  read(count: number, failed: number, seconds: number): void;
  /** Requests on the transports the device's mapper uses (a Modbus line), when its mapper reports them. */
  readonly requests: RequestObserver;
}

export interface MapperObserver {
  /** The observer of a device the host starts serving. */
  device(protocol: string, deviceId: string): DeviceObserver;
  /** The device is no longer served here: its figures may go. */
  forget(deviceId: string): void;
}
