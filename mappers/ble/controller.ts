/**
 * One Bluetooth controller (hciN) shared by every BLE device on it, through noble. noble is
 * loaded on first use only: on a kernel without Bluetooth it throws as it opens its socket,
 * and that must cost the agent its BLE devices, nothing else. The controller scans while any
 * device listens for advertisements or waits to be found, pauses scanning while it connects,
 * and establishes one connection at a time (an LE controller has one pending connect at most).
 */
import { createRequire } from 'node:module';
import type { Peripheral } from '@abandonware/noble';
import type { Logger } from '../../src/log.js';
import { DeviceUnreachableError } from '../../src/mapperhost/contract.js';
import type { Lease, TransportPool } from '../../src/mapperhost/transports.js';

type Noble = typeof import('@abandonware/noble');
type NobleFactory = (options: { deviceId?: number }) => Noble;
/**
 * On the HCI user channel noble (1.9.2-26) never asks for the controller's ACL buffers, and
 * without them it sends nothing on a connection: ask once the controller is powered on.
 */
export function askForAclBuffers(noble: Noble): void {
  (noble as unknown as { _bindings: { _hci: { readLeBufferSize(): void } } })._bindings._hci.readLeBufferSize();
}

const POWER_ON_TIMEOUT_MS = 10_000;
const SCAN_RESTART_MS = 1000;

export class BluetoothUnavailableError extends Error {}

/** Filters what a listener sees: one device, by address or by advertised name. */
export interface Match {
  address?: string;
  localName?: string;
}

export type AdvertisementListener = (peripheral: Peripheral) => void;

function matches(match: Match, peripheral: Peripheral): boolean {
  if (match.address !== undefined) return peripheral.address === match.address;
  return match.localName !== undefined && peripheral.advertisement.localName === match.localName;
}

export function describeMatch(match: Match): string {
  return match.address ?? `"${match.localName}"`;
}

function adapterName(adapter: number | undefined): string {
  return `hci${adapter ?? process.env.NOBLE_HCI_DEVICE_ID ?? 0}`;
}

function loadNoble(adapter: number | undefined): Noble {
  try {
    const factory = createRequire(import.meta.url)('@abandonware/noble/with-custom-binding') as NobleFactory;
    const noble = factory(adapter === undefined ? {} : { deviceId: adapter });
    // Reading the state opens the HCI socket: where a host without Bluetooth fails. (Not in noble's types.)
    void (noble as unknown as { state: string }).state;
    return noble;
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code === 'EAFNOSUPPORT') throw new BluetoothUnavailableError('Bluetooth is not available: this kernel has no Bluetooth support (EAFNOSUPPORT)');
    // noble and its HCI socket are optional dependencies: absent where npm had no compiler to build them, or in a package built without them.
    if (code === 'MODULE_NOT_FOUND') {
      const missing = /Cannot find module '([^']+)'/.exec(message)?.[1] ?? 'noble';
      throw new BluetoothUnavailableError(`Bluetooth is not available: ${missing} is not installed or was not built for ${process.platform}-${process.arch} (optional dependencies @abandonware/noble and @abandonware/bluetooth-hci-socket; npm builds them only where a C compiler is present)`);
    }
    if (code === 'EPERM' || code === 'EACCES') throw new BluetoothUnavailableError(`Bluetooth is not available: no permission to open the HCI socket (${code}); run as root or grant CAP_NET_RAW`);
    throw new BluetoothUnavailableError(`Bluetooth is not available: ${message}`);
  }
}

export class BleController {
  private readonly listeners = new Map<AdvertisementListener, Match>();
  private scanning = false;
  private pauses = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly onDiscover = (peripheral: Peripheral) => {
    for (const [listener, match] of this.listeners) if (matches(match, peripheral)) listener(peripheral);
  };
  // The controller stops scanning on its own now and then (a connection, a reset): resume.
  private readonly onScanStop = () => {
    this.scanning = false;
    setTimeout(() => this.updateScanning(), SCAN_RESTART_MS).unref();
  };
  private readonly onStateChange = (state: string) => {
    this.log.info({ controller: this.name, state }, 'bluetooth controller state');
    if (state !== 'poweredOn') return;
    if (process.env.HCI_CHANNEL_USER) askForAclBuffers(this.noble);
    this.updateScanning();
  };

  constructor(
    readonly name: string,
    private readonly noble: Noble,
    private readonly log: Logger,
  ) {
    noble.on('discover', this.onDiscover);
    noble.on('scanStop', this.onScanStop);
    noble.on('stateChange', this.onStateChange);
  }

  /** Stops scanning and lets go of noble, which stays open for the next controller on this adapter. */
  close(): void {
    this.closed = true;
    this.listeners.clear();
    this.updateScanning();
    this.noble.removeListener('discover', this.onDiscover);
    this.noble.removeListener('scanStop', this.onScanStop);
    this.noble.removeListener('stateChange', this.onStateChange);
  }

  /** Resolves once the controller is powered on; a controller that stays off is an error naming its state. */
  poweredOn(): Promise<void> {
    if (this.noble._state === 'poweredOn') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.noble.removeListener('stateChange', onState);
        reject(new BluetoothUnavailableError(`Bluetooth controller ${this.name} is ${this.noble._state}, not powered on (is it present and up? hciconfig ${this.name} up)`));
      }, POWER_ON_TIMEOUT_MS);
      const onState = (state: string) => {
        if (state !== 'poweredOn') return;
        clearTimeout(timer);
        this.noble.removeListener('stateChange', onState);
        resolve();
      };
      this.noble.on('stateChange', onState);
    });
  }

  /** Calls `listener` with every advertisement that matches, until the returned function is called. */
  listen(match: Match, listener: AdvertisementListener): () => void {
    this.listeners.set(listener, match);
    this.updateScanning();
    return () => {
      this.listeners.delete(listener);
      this.updateScanning();
    };
  }

  /** The peripheral's next advertisement, or DeviceUnreachableError after `timeoutMs`. */
  find(match: Match, timeoutMs: number): Promise<Peripheral> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new DeviceUnreachableError(`${describeMatch(match)} not seen on ${this.name} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const stop = this.listen(match, (peripheral) => {
        clearTimeout(timer);
        stop();
        resolve(peripheral);
      });
    });
  }

  /** Runs `task` (connect and discover) when no other connection is being set up, with scanning paused. */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = async () => {
      this.pauses++;
      this.updateScanning();
      try {
        return await task();
      } finally {
        this.pauses--;
        this.updateScanning();
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private updateScanning(): void {
    const wanted = !this.closed && this.listeners.size > 0 && this.pauses === 0 && this.noble._state === 'poweredOn';
    if (wanted === this.scanning) return;
    this.scanning = wanted;
    if (wanted) {
      // Duplicates allowed: advertisement-only sensors send their values in every advertisement.
      this.noble.startScanningAsync([], true).catch((error: Error) => {
        this.scanning = false;
        this.log.warn({ controller: this.name, err: error.message }, 'bluetooth scan did not start');
      });
    } else {
      this.noble.stopScanning();
    }
  }
}

/**
 * noble (1.9) cannot close the HCI socket it opens, nor the process listeners it adds: it is
 * opened once per adapter and kept for the life of the process, whichever agent uses it.
 */
const nobles = new Map<string, Noble>();

function nobleFor(adapter: number | undefined): Noble {
  const name = adapterName(adapter);
  const noble = nobles.get(name) ?? loadNoble(adapter);
  nobles.set(name, noble);
  return noble;
}

/**
 * The controller shared by the agent's BLE devices, powered on; a host without Bluetooth is
 * tried again by the next device that asks. The caller releases it when its device closes.
 */
export async function controllerFor(pool: TransportPool, adapter: number | undefined, log: Logger): Promise<Lease<BleController>> {
  const name = adapterName(adapter);
  const lease = await pool.acquire(`bluetooth:${name}`, () => new BleController(name, nobleFor(adapter), log), async (controller) => controller.close());
  try {
    await lease.transport.poweredOn();
  } catch (error) {
    await lease.release();
    throw error;
  }
  return lease;
}
