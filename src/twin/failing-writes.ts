/**
 * A device whose changes keep failing to commit (a damaged page under its rows, a full or
 * failing disk) goes `unhealthy` with the storage error as its reason, and the first change of it
 * that commits again gives it back the state it had. Logged once per device and change of
 * state: a device written a hundred times a second must not write a hundred log lines.
 */
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Twins } from './twins.js';

/** As for a mapper's reads: one failure can be chance, three in a row are a state. */
const FAILED_COMMITS_BEFORE_UNHEALTHY = 3;

/** For the twin's whole life: the watch ends with it. */
export function watchFailingWrites({ twins, db, log }: { twins: Twins; db: Database; log: Logger }): void {
  /** Failed commits in a row, by device. */
  const failures = new Map<string, number>();
  /** Devices made unhealthy here, with the state to give back. */
  const unhealthy = new Map<string, string>();
  /** The devices with changes in the batch not yet committed. */
  let batch = new Set<string>();

  const committed = (devices: Set<string>) => {
    for (const id of devices) {
      failures.delete(id);
      const before = unhealthy.get(id);
      if (before === undefined) continue;
      unhealthy.delete(id);
      log.info({ device: id }, 'device writes commit again');
      if (twins.get(id)?.state !== 'unhealthy') continue;
      if (before === 'unhealthy') twins.setStateReason(id, undefined);
      else twins.setState(id, before, 'mapper');
    }
  };

  const failed = (devices: Set<string>, reason: string) => {
    for (const id of devices) {
      const device = twins.get(id);
      if (!device) {
        failures.delete(id);
        unhealthy.delete(id);
        continue;
      }
      const count = (failures.get(id) ?? 0) + 1;
      failures.set(id, count);
      if (count < FAILED_COMMITS_BEFORE_UNHEALTHY) continue;
      if (!unhealthy.has(id)) {
        unhealthy.set(id, device.state);
        log.warn({ device: id, reason }, 'device writes keep failing: unhealthy');
      }
      // The failed commit reloaded the device from SQLite, where the state may be older and the reason is not kept.
      if (device.state === 'unhealthy') twins.setStateReason(id, reason);
      else twins.setState(id, 'unhealthy', 'mapper', reason);
    }
  };

  twins.onStaged((pending) => {
    // Twin changes only: the state set here is a write of the device too, and may commit while its twin cannot.
    if (pending.kind !== 'changed') return;
    if (batch.size === 0) {
      const devices = batch;
      const next = () => {
        if (batch === devices) batch = new Set();
      };
      db.afterCommit(
        () => {
          next();
          committed(devices);
        },
        (error) => {
          next();
          // After the other listeners of the batch: the twin reloads its devices in one of them.
          queueMicrotask(() => failed(devices, (error as Error).message));
        },
      );
    }
    batch.add(pending.event.deviceId);
  });
}
