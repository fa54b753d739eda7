/**
 * What goes up as EdgeCore's devicetwin sends it: every twin change of a device this node
 * manages as `device/<ns>/<name>/twin/edge_updated`, every state change as
 * `device/<ns>/<name>/state/update`, staged in the outbox with the change itself. Changes the
 * cloud made are not echoed back, nor properties whose visitor says `reportToCloud: false`.
 * A state message carries the last-online time in the form of the configured KubeEdge release.
 */
import type { Remove } from '../module.js';
import type { PendingEvent, Twins } from '../twin/twins.js';
import type { MsgTwin } from '../twin/types.js';
import type { Merge, Outbox } from './outbox.js';
import type { StateDialect } from './versions.js';

export const twinResource = (namespace: string, name: string) => `device/${namespace}/${name}/twin/edge_updated`;
export const stateResource = (namespace: string, name: string) => `device/${namespace}/${name}/state/update`;

/** Whether a device's state (without `property`) or a twin property goes to the cloud. */
export type ReportFilter = (deviceId: string, property?: string) => boolean;

const mergeTwins: Merge = (older, newer) => ({
  ...newer,
  twin: { ...(older.twin as Record<string, MsgTwin>), ...(newer.twin as Record<string, MsgTwin>) },
});
const keepNewer: Merge = (_older, newer) => newer;

export function stageReports(twins: Twins, outbox: Outbox, reports: ReportFilter, dialect: StateDialect): Remove {
  return twins.onStaged((pending: PendingEvent) => {
    if (pending.event.origin === 'cloud') return;
    if (pending.kind === 'changed') {
      const change = pending.event;
      const device = twins.get(change.deviceId);
      if (!device?.managed || !reports(device.id)) return;
      const twin = Object.fromEntries(Object.entries(change.synced).filter(([key]) => reports(device.id, key)));
      if (Object.keys(twin).length === 0) return;
      // Without an event id from the device, the outbox derives one from the message id: nothing to store.
      const content = change.eventId ? { event_id: change.eventId, timestamp: Date.now(), twin } : { timestamp: Date.now(), twin };
      outbox.stage(twinResource(device.namespace, device.name), content, `twin:${device.id}`, mergeTwins);
      return;
    }
    const { device } = pending.event;
    if (!device.managed || !reports(device.id)) return;
    const now = new Date();
    const content = { timestamp: now.getTime(), device: dialect.device(device.name, device.state, device.lastOnline, now) };
    outbox.stage(stateResource(device.namespace, device.name), content, `state:${device.id}`, keepNewer);
  });
}
