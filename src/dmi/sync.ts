/**
 * Keeps each registered DMI mapper in line with the catalog and the twin, as EdgeCore's DMI worker
 * does: a model before its first device (CreateDeviceModel/UpdateDeviceModel), then the devices
 * (RegisterDevice/UpdateDevice/RemoveDevice — a new desired value is an UpdateDevice with the whole
 * device), then models no device of this node uses any more (RemoveDeviceModel). What a mapper was
 * sent is recorded after it answered, so a call that failed is made again at the next sync, and a
 * mapper that registers again gets everything in its registration answer.
 */
import { status } from '@grpc/grpc-js';
import type { DeviceCatalog } from '../devices/catalog.js';
import { splitId, type Device } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { Twins } from '../twin/twins.js';
import { callMapper, MapperCallError, type MapperCall } from './client.js';
import { dmiDevice, dmiModel } from './content.js';
import { messageType } from './proto.js';
import type { MapperRegistry, Sent, SentKind } from './registry.js';
import type { Registration } from './server.js';

const ENCODED = { device: messageType('v1beta1.Device'), model: messageType('v1beta1.DeviceModel') };

/** The mapper is gone or hangs, rather than refusing one call. */
const UNREACHABLE = new Set<number>([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED]);

interface Wanted {
  message: Record<string, unknown>;
  sent: Sent;
}

interface Plan {
  devices: Map<string, Wanted>;
  models: Map<string, Wanted>;
  /** Devices that cannot be handed to the mapper, and why. */
  refused: Map<string, string>;
}

export interface MapperSyncDeps {
  registry: MapperRegistry;
  catalog: DeviceCatalog;
  twins: Twins;
  callTimeoutMs: number;
  /** Aborts when the agent stops: calls in flight are cancelled. */
  signal: AbortSignal;
  log: Logger;
}

function encoded(kind: SentKind, protocol: string, message: Record<string, unknown>): Wanted {
  const type = ENCODED[kind];
  return { message, sent: { protocol, content: Buffer.from(type.encode(type.fromObject(message)).finish()).toString('base64') } };
}


export class MapperSync {
  private readonly queues = new Map<string, Promise<void>>();
  /** Protocols with a sync queued that has not begun: a second request joins it. */
  private readonly queued = new Set<string>();
  /** Bumped at each registration: a sync begun before it speaks to the old mapper and must not record or judge anything. */
  private readonly generation = new Map<string, number>();
  /** Why each protocol's mapper cannot be reached, while it cannot. */
  private readonly unreachable = new Map<string, string>();
  /** Protocols whose last sync did not reach the end: synced again once their mapper listens. */
  private readonly incomplete = new Set<string>();

  constructor(private readonly deps: MapperSyncDeps) {}

  /** The devices of this node the protocol's mapper serves. */
  devicesOf(protocol: string): Device[] {
    return this.deps.catalog.managed().filter((device) => device.protocol.name === protocol);
  }

  /** Why the protocol's mapper is known not to answer now, if it is. */
  unreachableReason(protocol: string): string | undefined {
    return this.unreachable.get(protocol);
  }

  /** Syncs the protocol's mapper after what is queued for it; requests made meanwhile are one sync. */
  schedule(protocol: string): Promise<void> {
    if (this.queued.has(protocol)) return this.queues.get(protocol)!;
    this.queued.add(protocol);
    const next = (this.queues.get(protocol) ?? Promise.resolve()).then(() => {
      this.queued.delete(protocol);
      return this.sync(protocol);
    });
    this.queues.set(
      protocol,
      next.catch((error: unknown) => this.deps.log.error({ err: error, protocol }, 'DMI sync failed')),
    );
    return this.queues.get(protocol)!;
  }

  /** Resolves when every sync begun or queued so far is over. */
  async idle(): Promise<void> {
    await Promise.all(this.queues.values());
  }

  /**
   * A mapper (re)registered: answered at once with its devices and models, without waiting for a
   * sync in flight to its old address (the mapper gives up after 1 s, and its registration
   * failing ends it). What the answer holds is what it now has.
   */
  registration(protocol: string, withData: boolean): Registration {
    this.generation.set(protocol, (this.generation.get(protocol) ?? 0) + 1);
    const plan = this.plan(protocol);
    const { registry, twins } = this.deps;
    for (const kind of ['device', 'model'] as const) {
      const wanted = kind === 'device' ? plan.devices : plan.models;
      for (const id of registry.sentFor(kind, protocol)) if (!(withData && wanted.has(id))) registry.recordSent(kind, id, undefined);
      if (withData) for (const [id, { sent }] of wanted) registry.recordSent(kind, id, sent);
    }
    // Without its data in the answer, the mapper is handed each device once it listens.
    if (withData) this.incomplete.delete(protocol);
    else this.incomplete.add(protocol);
    if (this.unreachable.delete(protocol)) {
      for (const id of plan.devices.keys()) twins.setState(id, 'unknown', 'mapper', `mapper registered again; waiting for its first report`);
    }
    this.refuse(plan.refused);
    return { deviceList: [...plan.devices.values()].map((w) => w.message), modelList: [...plan.models.values()].map((w) => w.message) };
  }

  /** A probe found the mapper listening: a sync it missed is made now (its devices' states are its own to report). */
  reachable(protocol: string): void {
    const wasLost = this.unreachable.delete(protocol);
    if (wasLost || this.incomplete.has(protocol)) void this.schedule(protocol);
  }

  /** The mapper does not listen (found by a probe or a failed call): its devices are offline, with the reason, until it registers again. */
  lost(protocol: string, reason: string): void {
    if (this.unreachable.get(protocol) === reason) return;
    const first = !this.unreachable.has(protocol);
    this.unreachable.set(protocol, reason);
    if (first) this.deps.log.warn({ protocol, reason }, 'DMI mapper not answering: its devices are offline');
    for (const device of this.devicesOf(protocol)) this.deps.twins.setState(device.id, 'offline', 'mapper', reason);
  }

  private plan(protocol: string): Plan {
    const { catalog, twins } = this.deps;
    const plan: Plan = { devices: new Map(), models: new Map(), refused: new Map() };
    for (const device of this.devicesOf(protocol)) {
      const model = catalog.current.models.get(device.modelId);
      if (!model) {
        plan.refused.set(device.id, `no DeviceModel ${device.modelId}`);
        continue;
      }
      try {
        const modelMessage = plan.models.get(model.id) ?? encoded('model', protocol, dmiModel(model));
        plan.devices.set(device.id, encoded('device', protocol, dmiDevice(device, model, twins.get(device.id))));
        plan.models.set(model.id, modelMessage);
      } catch (error) {
        plan.refused.set(device.id, `cannot be handed to a DMI mapper: ${(error as Error).message}`);
      }
    }
    return plan;
  }

  private refuse(refused: Map<string, string>): void {
    for (const [id, reason] of refused) {
      const device = this.deps.twins.get(id);
      if (device && (device.state !== 'unhealthy' || device.stateReason !== reason)) this.deps.twins.setState(id, 'unhealthy', 'mapper', reason);
    }
  }

  private async sync(protocol: string): Promise<void> {
    const { registry } = this.deps;
    const mapper = registry.get(protocol);
    if (!mapper) return;
    const generation = this.generation.get(protocol) ?? 0;
    const plan = this.plan(protocol);
    this.refuse(plan.refused);
    this.incomplete.add(protocol);
    const changed = (kind: SentKind, wanted: Map<string, Wanted>) => [...wanted].filter(([id, w]) => registry.sentTo(kind, id)?.content !== w.sent.content);

    const steps: Array<{ kind: SentKind; id: string; call: MapperCall; request: object; sent: Sent | undefined }> = [
      ...changed('model', plan.models).map(([id, w]) => ({ kind: 'model' as const, id, call: (registry.sentTo('model', id) ? 'UpdateDeviceModel' : 'CreateDeviceModel') as MapperCall, request: { model: w.message }, sent: w.sent })),
      ...registry
        .sentFor('device', protocol)
        .filter((id) => !plan.devices.has(id))
        .map((id) => ({ kind: 'device' as const, id, call: 'RemoveDevice' as MapperCall, request: { deviceName: splitId(id).name, deviceNamespace: splitId(id).namespace }, sent: undefined })),
      ...changed('device', plan.devices).map(([id, w]) => ({ kind: 'device' as const, id, call: (registry.sentTo('device', id) ? 'UpdateDevice' : 'RegisterDevice') as MapperCall, request: { device: w.message }, sent: w.sent })),
      ...registry
        .sentFor('model', protocol)
        .filter((id) => !plan.models.has(id))
        .map((id) => ({ kind: 'model' as const, id, call: 'RemoveDeviceModel' as MapperCall, request: { modelName: splitId(id).name, modelNamespace: splitId(id).namespace }, sent: undefined })),
    ];
    for (const step of steps) {
      try {
        await callMapper(mapper.address, step.call, step.request, this.deps.callTimeoutMs, this.deps.signal);
      } catch (error) {
        if (this.generation.get(protocol) !== generation || this.deps.signal.aborted) return;
        if (!(error instanceof MapperCallError)) throw error;
        if (UNREACHABLE.has(error.code)) return this.lost(protocol, `DMI mapper ${mapper.name} did not answer: ${error.message}`);
        // The mapper refused this one call (a device it cannot parse): the device says why; the others go on.
        this.deps.log.warn({ protocol, id: step.id, err: error }, 'DMI mapper refused a call');
        if (step.kind === 'device' && step.sent) this.refuse(new Map([[step.id, `DMI mapper ${mapper.name} refused it: ${error.message}`]]));
        continue;
      }
      if (this.generation.get(protocol) !== generation) return;
      registry.recordSent(step.kind, step.id, step.sent);
    }
    this.incomplete.delete(protocol);
  }
}
