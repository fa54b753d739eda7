/**
 * The device twin with KubeEdge's devicetwin semantics (edge/pkg/devicetwin/dtmanager/twin.go):
 * every expected or actual value given counts as a change and moves its edge version on,
 * unknown keys are added (within the bounds of bounds.ts), `null` deletes an optional twin, a
 * request is all or nothing. Changes are persisted first and announced after they are committed.
 */
import { EventEmitter } from 'node:events';
import { AgentError } from '../errors.js';
import type { Remove } from '../module.js';
import { boundedDocument, isExpiredTombstone, tombstonesToMakeRoom, type TwinLimits } from './bounds.js';
import type { HistoryEntry, TwinStore } from './store.js';
import type { DeviceAttribute, DeviceRecord, MsgTwin, TwinProperty, TwinVersion } from './types.js';
import { DELETED, DEVICE_STATES, TwinError, toMsgTwin } from './types.js';
import { checkTwinKey, checkTwinValue, checkValueType, TWIN_TYPES } from './validate.js';

export type Origin = 'mqtt' | 'api' | 'mapper' | 'manifest' | 'cloud';

/** Why a desired value for a device's property cannot be written, or undefined when it may be. */
export type DesireCheck = (deviceId: string, property: string, value: string) => string | undefined;

export interface TwinDoc {
  last: MsgTwin | null;
  current: MsgTwin | null;
}

export interface TwinDelta {
  twin: Record<string, MsgTwin>;
  delta: Record<string, string>;
}

interface ChangedKey {
  key: string;
  /** The twin before the change; undefined when it is new or was deleted. */
  last?: TwinProperty;
  /** The twin after the change; null when deleted. */
  current: TwinProperty | null;
  /** What is stored for the key: `current`, or the tombstone of a deleted twin. */
  stored: TwinProperty;
  /** Whether the change reported an actual value, which goes into the history. */
  reported: boolean;
  /** The sides the request gave (SIDE bits), for a twin that existed; undefined for an added twin. */
  given?: number;
  /** When the change was made (wall clock, ms). */
  at: number;
}

const SIDES = ['expected', 'actual'] as const;
const SIDE_BIT = { expected: 1, actual: 2 } as const;

/** What the request gave for an existing twin, as EdgeCore's result shows it: the values with the time of the change. */
function touched({ current, given = 0, at }: ChangedKey): MsgTwin {
  const msg: MsgTwin = {};
  // A side given as '' is cleared (current has none) and shown as given.
  for (const side of SIDES) if (given & SIDE_BIT[side]) msg[side] = { value: current?.[side]?.value ?? '', metadata: { timestamp: at } };
  return msg;
}

/** One committed twin update. Its result and document are built only when someone reads them. */
export class TwinChange {
  private builtResult?: Record<string, MsgTwin | null>;
  private builtDocument?: Record<string, TwinDoc>;

  constructor(
    readonly deviceId: string,
    readonly origin: Origin,
    readonly eventId: string,
    private readonly keys: ChangedKey[],
    readonly delta: TwinDelta | undefined,
  ) {}

  get changed(): boolean {
    return this.keys.length > 0;
  }

  /** What the update touched, as EdgeCore's twin/update/result shows it (`null` = deleted). */
  get result(): Record<string, MsgTwin | null> {
    this.builtResult ??= Object.fromEntries(
      this.keys.map((changed) => {
        const { key, current } = changed;
        if (!current) return [key, null];
        if (changed.given === undefined) return [key, toMsgTwin(current)];
        return [key, { ...touched(changed), optional: current.optional, metadata: { type: current.type } }];
      }),
    );
    return this.builtResult;
  }

  /** The changed twins whole, with versions, as EdgeCore's devicetwin syncs them to the cloud; a deleted one typed `deleted`. */
  get synced(): Record<string, MsgTwin> {
    return Object.fromEntries(this.keys.map(({ key, current }) => [key, current ? toMsgTwin(current, true) : { metadata: { type: DELETED } }]));
  }

  get document(): Record<string, TwinDoc> {
    this.builtDocument ??= Object.fromEntries(
      this.keys.map(({ key, last, current }) => [key, { last: last ? toMsgTwin(last) : null, current: current ? toMsgTwin(current) : null }]),
    );
    return this.builtDocument;
  }
}

export interface StateChange {
  device: DeviceRecord;
  origin: Origin;
}

export type PendingEvent = { kind: 'changed'; event: TwinChange } | { kind: 'state'; event: StateChange };

interface TwinEvents {
  changed: [TwinChange];
  state: [StateChange];
}

/** One key of a `twin/update` request; timestamps and versions the edge sends are not used. */
export interface TwinRequest {
  expected?: { value?: string } | null;
  actual?: { value?: string } | null;
  optional?: boolean | null;
  metadata?: { type?: string } | null;
}

/** A requested twin change, as parsed from a `twin/update` payload. `null` asks for deletion. */
export type TwinUpdate = Record<string, TwinRequest | null>;

export interface NewDevice {
  id: string;
  namespace: string;
  name: string;
  description?: string;
  attributes?: Record<string, DeviceAttribute>;
  managed: boolean;
  /** Twins created with the device: the DeviceModel's properties with their types and seeds; these keys are the model's. */
  twins: Record<string, { type: string; desired?: string; reported?: string }>;
}

function bump(version: TwinVersion | undefined): TwinVersion {
  return { cloud: version?.cloud ?? 0, edge: (version?.edge ?? 0) + 1 };
}

/** A twin's values and versions are replaced, never changed in place: a copy of the top level is a snapshot. Every side is a key, set or not. */
function clone(p: TwinProperty): TwinProperty {
  return { expected: undefined, actual: undefined, expectedVersion: undefined, actualVersion: undefined, ...p };
}

/** EdgeCore formats last_online as Go's "2006-01-02 15:04:05" in local time. */
function lastOnlineNow(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Validation EdgeCore does while decoding, before it looks the device up. */
export function checkTwinUpdate(update: TwinUpdate): void {
  for (const key in update) {
    checkTwinKey(key);
    const twin = update[key];
    if (!twin) continue;
    if (twin.expected?.value !== undefined) checkTwinValue(twin.expected.value);
    if (twin.actual?.value !== undefined) checkTwinValue(twin.actual.value);
    const type = twin.metadata?.type;
    if (type !== undefined && !(TWIN_TYPES as readonly string[]).includes(type)) throw new TwinError(400, 'the value type is not allowed');
  }
}

/**
 * How often a device's tombstones are looked at, at most (or once per TTL when shorter). The twin
 * is no module and keeps no timer: a device is swept when the catalog loads it (every start and
 * reload) and when an update touches it; one nobody touches holds at most maxExtraProperties
 * tombstones meanwhile.
 */
const SWEEP_INTERVAL_MS = 60_000;

export class Twins {
  private readonly devices = new Map<string, DeviceRecord>();
  /** Monotonic time (performance.now()) before which a device is not swept again: wall-clock steps cannot stop sweeps. */
  private readonly nextSweep = new Map<string, number>();
  private readonly events = new EventEmitter<TwinEvents>();
  private readonly stagers = new Set<(event: PendingEvent) => void>();
  private readonly desireChecks = new Set<DesireCheck>();
  /** Events of changes not yet committed, in order. */
  private readonly pending: PendingEvent[] = [];

  constructor(
    private readonly store: TwinStore,
    private readonly onListenerError: (error: unknown) => void,
    private readonly limits: TwinLimits,
  ) {
    for (const device of store.loadDevices()) this.devices.set(device.id, device);
  }

  get(id: string): DeviceRecord | undefined {
    return this.devices.get(id);
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()];
  }

  history(id: string, key: string, limit?: number): HistoryEntry[] {
    return this.store.history(id, key, limit);
  }

  flushed(): Promise<void> {
    return this.store.flushed();
  }

  /** The twin as `twin/get` answers it: 404 for an unknown device, 413 when larger than `twin.maxGetBytes`. */
  document(id: string): Record<string, MsgTwin> {
    const device = this.devices.get(id);
    if (!device) throw new TwinError(404, `Device ${id} not found while getting twin`);
    return boundedDocument(id, device.twin, this.limits.maxGetBytes);
  }

  /** Adds a device, or refreshes its description, attributes and node binding, creates missing twins and marks which keys the model defines. */
  upsertDevice(spec: NewDevice): DeviceRecord {
    const existing = this.devices.get(spec.id);
    const device: DeviceRecord = existing ?? {
      id: spec.id,
      namespace: spec.namespace,
      name: spec.name,
      state: 'unknown',
      lastOnline: '',
      attributes: {},
      managed: spec.managed,
      twin: new Map(),
    };
    device.description = spec.description;
    device.attributes = spec.attributes ?? {};
    device.managed = spec.managed;
    this.devices.set(device.id, device);
    this.store.saveDevice(device);
    const now = Date.now();
    for (const [key, property] of device.twin) {
      const inModel = Object.hasOwn(spec.twins, key);
      if (property.inModel === inModel) continue;
      property.inModel = inModel;
      this.store.saveTwin(device.id, key, property);
    }
    for (const [key, seed] of Object.entries(spec.twins)) {
      if (device.twin.has(key)) continue;
      const property: TwinProperty = { type: seed.type, optional: true, historySeq: 0, inModel: true };
      if (seed.desired !== undefined) {
        property.expected = { value: seed.desired, timestamp: now };
        property.expectedVersion = { cloud: 1, edge: 0 };
      }
      if (seed.reported !== undefined) {
        property.actual = { value: seed.reported, timestamp: now };
        property.actualVersion = { cloud: 1, edge: 0 };
      }
      device.twin.set(key, property);
      this.store.saveTwin(device.id, key, property);
    }
    this.sweep(device, now);
    return device;
  }

  removeDevice(id: string): DeviceRecord | undefined {
    const device = this.devices.get(id);
    if (!device) return undefined;
    this.devices.delete(id);
    this.nextSweep.delete(id);
    this.store.deleteDevice(id);
    return device;
  }

  /** Applies a twin update from the edge (EdgeCore's RestDealType). Throws TwinError, changing nothing. */
  update(deviceId: string, update: TwinUpdate, origin: Origin, eventId = ''): TwinChange {
    checkTwinUpdate(update);
    const device = this.devices.get(deviceId);
    if (!device) throw new TwinError(404, 'update rejected due to the device is not existed');
    const now = Date.now();
    this.sweep(device, now);
    const changedKeys: ChangedKey[] = [];
    let addsKeys = false;

    for (const key in update) {
      const request = update[key]!;
      const existing = device.twin.get(key);
      if (request === null) {
        if (!existing || existing.type === DELETED || !existing.optional) continue;
        // EdgeCore clears only sides that carry a version: a twin never given a value stays.
        if (!existing.expectedVersion && !existing.actualVersion) continue;
        const deleted: TwinProperty = { ...clone(existing), type: DELETED, expected: undefined, actual: undefined, deletedAt: now };
        if (existing.expectedVersion) deleted.expectedVersion = bump(existing.expectedVersion);
        if (existing.actualVersion) deleted.actualVersion = bump(existing.actualVersion);
        changedKeys.push({ key, last: existing, current: null, stored: deleted, reported: false, at: now });
        continue;
      }
      const wasDeleted = existing?.type === DELETED;
      const property: TwinProperty = existing
        ? clone(existing)
        : { type: request.metadata ? (request.metadata.type ?? '') : 'string', optional: request.optional ?? true, historySeq: 0, inModel: false };
      if (wasDeleted) {
        property.type = request.metadata?.type || 'string';
        property.deletedAt = undefined;
      }
      let given = 0;
      let changed = !existing;
      let reported = false;
      for (const side of SIDES) {
        const value = request[side];
        if (!value) continue;
        if (value.value === undefined) throw new TwinError(400, `Update twin error, key:${key} ${side} has no value`);
        checkValueType(property.type, value.value);
        property[side] = value.value === '' ? undefined : { value: value.value, timestamp: now };
        const versionKey = side === 'expected' ? 'expectedVersion' : 'actualVersion';
        property[versionKey] = bump(property[versionKey]);
        given |= SIDE_BIT[side];
        changed = true;
        if (side === 'actual' && property.actual) {
          property.historySeq += 1;
          reported = true;
        }
      }
      if (existing && request.optional === false && existing.optional) {
        property.optional = false;
        changed = true;
      }
      if (existing && request.metadata && (wasDeleted || request.metadata.type !== existing.type)) changed = true;
      if (!changed) continue;
      addsKeys ||= !existing;
      changedKeys.push({ key, last: existing && !wasDeleted ? existing : undefined, current: property, stored: property, reported, given: existing ? given : undefined, at: now });
    }

    const purged = addsKeys ? tombstonesToMakeRoom(deviceId, device.twin, new Map(changedKeys.map((c) => [c.key, c.stored])), this.limits.maxExtraProperties) : [];
    for (const { key, stored, reported } of changedKeys) {
      device.twin.set(key, stored);
      this.store.saveTwin(device.id, key, stored, reported);
    }
    for (const key of purged) this.purge(device, key);
    const change = new TwinChange(deviceId, origin, eventId, changedKeys, this.delta(deviceId));
    this.announce({ kind: 'changed', event: change });
    return change;
  }

  /** Reported values from a mapper: `twin/update` with actual values only. */
  report(deviceId: string, values: Record<string, string>, origin: Origin = 'mapper'): TwinChange {
    const update: TwinUpdate = {};
    for (const key in values) update[key] = { actual: { value: values[key] } };
    return this.update(deviceId, update, origin);
  }

  /**
   * Desired values set locally: `twin/update` with expected values only. Those from the API are
   * checked first (`onDesire`): a value the device's mapper already knows it cannot write is
   * refused with 422 and the reason (an API answer, not an EdgeCore Result code), nothing changed;
   * the cloud's and manifests' are kept as given.
   */
  desire(deviceId: string, values: Record<string, string>, origin: Origin = 'api'): TwinChange {
    if (origin === 'api') {
      for (const [key, value] of Object.entries(values)) {
        for (const check of this.desireChecks) {
          const reason = check(deviceId, key, value);
          if (reason !== undefined) throw new AgentError(422, `${key}: ${reason}`);
        }
      }
    }
    return this.update(deviceId, Object.fromEntries(Object.entries(values).map(([k, value]) => [k, { expected: { value } }])), origin);
  }

  /** EdgeCore's BuildDeviceTwinDelta: every twin with an expected value, and those whose actual differs. */
  delta(deviceId: string): TwinDelta | undefined {
    const device = this.devices.get(deviceId);
    if (!device) return undefined;
    // Built only for a device with a desired value: for most updates (reports from mappers) there is none.
    // forEach, not for…of: no [key, value] pair is made per property.
    let found: TwinDelta | undefined;
    let differs = false;
    device.twin.forEach((p, key) => {
      if (p.type === DELETED || !p.expected) return;
      found ??= { twin: {}, delta: {} };
      found.twin[key] = toMsgTwin(p);
      if (p.expected.value !== (p.actual?.value ?? '')) {
        found.delta[key] = p.expected.value;
        differs = true;
      }
    });
    return differs ? found : undefined;
  }

  /** `state/update`: known states only, case-insensitively; the case given is kept. */
  setState(deviceId: string, state: string, origin: Origin, reason?: string): DeviceRecord {
    const lower = state.toLowerCase();
    if (!(DEVICE_STATES as readonly string[]).includes(lower)) {
      throw new TwinError(400, `state ${JSON.stringify(state)} is not one of ${DEVICE_STATES.join(', ')}`);
    }
    const device = this.devices.get(deviceId);
    if (!device) throw new TwinError(404, `Device ${deviceId} not found`);
    device.state = state;
    device.stateReason = reason;
    device.lastOnline = lower === 'online' || lower === 'ok' ? lastOnlineNow() : '';
    this.store.saveDevice(device);
    this.announce({ kind: 'state', event: { device, origin } });
    return device;
  }

  /** Why the device is in its state now, when the state stays the same (a new error while offline); kept in memory only, not a change. */
  setStateReason(deviceId: string, reason: string | undefined): void {
    const device = this.devices.get(deviceId);
    if (device) device.stateReason = reason;
  }

  /** The device's answer to the last write of the property's desired value (undefined: it was written); kept in memory only, not a change. */
  setWriteError(deviceId: string, key: string, error: string | undefined): void {
    const property = this.devices.get(deviceId)?.twin.get(key);
    if (property) property.writeError = error;
  }

  /** Committed twin changes, in commit order. */
  onChange(listener: (change: TwinChange) => void): Remove {
    this.events.on('changed', listener);
    return () => this.events.off('changed', listener);
  }

  /** Checks desired values from the API before they change anything: the reason a value cannot be written, or undefined. */
  onDesire(check: DesireCheck): Remove {
    this.desireChecks.add(check);
    return () => this.desireChecks.delete(check);
  }

  /** Committed device state changes. */
  onState(listener: (change: StateChange) => void): Remove {
    this.events.on('state', listener);
    return () => this.events.off('state', listener);
  }

  /**
   * Calls `stager` with every change as it is made, before it is committed: what the stager
   * queues on the database (`Database.queue`) is committed in the same transaction, so it
   * survives exactly when the change does.
   */
  onStaged(stager: (event: PendingEvent) => void): Remove {
    this.stagers.add(stager);
    return () => this.stagers.delete(stager);
  }

  /**
   * Queues an event until its change is committed: one callback per batch, not per change.
   * If the commit fails, the devices it touched are reloaded from SQLite instead.
   */
  private announce(pending: PendingEvent): void {
    for (const stager of this.stagers) stager(pending);
    this.pending.push(pending);
    if (this.pending.length > 1) return;
    this.store.afterCommit(
      () => {
        for (const { kind, event } of this.pending.splice(0)) {
          try {
            if (kind === 'changed') this.events.emit('changed', event);
            else this.events.emit('state', event);
          } catch (error) {
            this.onListenerError(error);
          }
        }
      },
      () => {
        this.reload(new Set(this.pending.splice(0).map((p) => (p.kind === 'changed' ? p.event.deviceId : p.event.device.id))));
      },
    );
  }

  /** Purges the device's expired tombstones, at most once per SWEEP_INTERVAL_MS (or TTL, when shorter) of monotonic time. */
  private sweep(device: DeviceRecord, now: number): void {
    const tick = performance.now();
    if (tick < (this.nextSweep.get(device.id) ?? 0)) return;
    this.nextSweep.set(device.id, tick + Math.min(SWEEP_INTERVAL_MS, this.limits.tombstoneTtlMs));
    for (const [key, property] of device.twin) if (isExpiredTombstone(property, now, this.limits.tombstoneTtlMs)) this.purge(device, key);
  }

  /** A tombstone and its history go; no event, as the deletion itself was announced. */
  private purge(device: DeviceRecord, key: string): void {
    device.twin.delete(key);
    this.store.deleteTwin(device.id, key);
  }

  /** The devices as SQLite holds them, read once for all of a failed batch's devices. */
  private reload(deviceIds: ReadonlySet<string>): void {
    const stored = new Map(this.store.loadDevices().map((d) => [d.id, d]));
    for (const id of deviceIds) {
      const device = stored.get(id);
      if (device) this.devices.set(id, device);
      else this.devices.delete(id);
    }
  }

}
