/** Connecting to a GATT peripheral and finding the characteristics the visitors name. */
import type { Characteristic, Peripheral } from '@abandonware/noble';
import { DeviceUnreachableError } from '../../src/mapperhost/contract.js';
import { ConfigError } from '../../src/errors.js';
import { withTimeout } from '../../src/timeout.js';
import type { BleController, Match } from './controller.js';
import { describeMatch } from './controller.js';

/** Generous: a connection takes a few hundred ms on hardware, seconds on a busy emulated radio. */
const CONNECT_TIMEOUT_MS = 20_000;
const DISCOVER_TIMEOUT_MS = 20_000;

export interface GattSession {
  peripheral: Peripheral;
  /** By normalized UUID, as noble names them. */
  characteristics: Map<string, Characteristic>;
}

/**
 * Finds the peripheral, connects and discovers its characteristics, one device at a time per
 * controller. A device that is not advertising is unreachable (offline); one that lacks a
 * characteristic its visitors name is misconfigured.
 */
export async function openGatt(controller: BleController, match: Match, wanted: Set<string>, findTimeoutMs: number): Promise<GattSession> {
  const peripheral = await controller.find(match, findTimeoutMs);
  const who = describeMatch(match);
  return controller.exclusive(async () => {
    await withTimeout(
      peripheral.connectAsync(),
      CONNECT_TIMEOUT_MS,
      () => new DeviceUnreachableError(`connecting to ${who} timed out after ${CONNECT_TIMEOUT_MS / 1000} s`),
      () => peripheral.cancelConnect(),
    ).catch((error: unknown) => {
      throw error instanceof DeviceUnreachableError ? error : new DeviceUnreachableError(`cannot connect to ${who}: ${String(error)}`);
    });
    try {
      const { characteristics } = await withTimeout(
        peripheral.discoverAllServicesAndCharacteristicsAsync(),
        DISCOVER_TIMEOUT_MS,
        () => new DeviceUnreachableError(`discovering the services of ${who} timed out after ${DISCOVER_TIMEOUT_MS / 1000} s`),
      );
      const byUuid = new Map(characteristics.map((c) => [c.uuid, c]));
      const missing = [...wanted].filter((uuid) => !byUuid.has(uuid));
      if (missing.length > 0) throw new ConfigError(`${who} has no characteristic ${missing.join(', ')} (it has ${[...byUuid.keys()].join(', ')})`);
      return { peripheral, characteristics: byUuid };
    } catch (error) {
      await peripheral.disconnectAsync().catch(() => undefined);
      throw error;
    }
  });
}
