/**
 * The device catalog: what this agent serves, from its sources (the profile paths, and object
 * sources such as the cloud's stored Devices), reloaded through one serialized queue: load →
 * keep what could not be read (keep.ts) → validate (the manifests, then each mapper's visitors)
 * → bring the twin in line → seed desired values → announce `changed` to the modules that serve
 * devices (the mapper host, the KubeEdge bus). A reload that fails leaves the queue to the next.
 */
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { Origin, Twins } from '../twin/twins.js';
import type { DeviceRecord } from '../twin/types.js';
import { isComplete, keepUnreadDevices } from './keep.js';
import { formatError, loadCatalog, type Catalog, type ManifestError, type StoredObject } from './load.js';
import type { Device, DeviceModel, PropertyType } from './model.js';

export interface CatalogChange {
  /** The devices this node serves, after the change. */
  devices: Device[];
  models: Map<string, DeviceModel>;
  /** Devices this node gained and lost. */
  added: DeviceRecord[];
  removed: DeviceRecord[];
}

export type CatalogListener = (change: CatalogChange) => Promise<void> | void;

/** Objects held outside the profile files. Their desired values are the source's to set: a change is applied, not only seeded. */
export interface ObjectSource {
  name: string;
  origin: Origin;
  list(): Array<{ id: string; object: unknown }>;
}

export interface CatalogDeps {
  profiles: readonly string[];
  node: string;
  twins: Twins;
  /** What the mappers say of the loaded devices (their visitors): reported as manifest errors; the devices stay, the host marks them unhealthy. */
  validate(catalog: Catalog): ManifestError[];
  log: Logger;
}

/** Twin type names as EdgeCore's ValidateValue knows them. */
function twinType(type: PropertyType): string {
  switch (type) {
    case 'int':
      return 'int';
    case 'float':
    case 'double':
      return 'float';
    case 'boolean':
      return 'boolean';
    default:
      return 'string';
  }
}

/** Like EdgeCore, the agent serves the devices bound to its node, and those bound to none. */
function isManaged(nodeName: string | undefined, node: string): boolean {
  return !nodeName || nodeName === node;
}

export class DeviceCatalog implements Module {
  readonly name = MODULE.catalog;
  private catalog: Catalog = loadCatalog([]);
  private readonly sources = new Map<string, ObjectSource>();
  private readonly listeners = new Set<CatalogListener>();
  /** One reload at a time, in the order asked for. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly deps: CatalogDeps) {}

  async start(): Promise<void> {
    await this.reload('start');
  }

  async stop(): Promise<void> {
    await this.queue;
  }

  /** The manifests as last loaded. */
  get current(): Catalog {
    return this.catalog;
  }

  /** The devices this node serves now. */
  managed(): Device[] {
    return [...this.catalog.devices.values()].filter((d) => isManaged(d.nodeName, this.deps.node));
  }

  /** Whether a device's state (without `property`) or a twin property goes to the cloud: devices the cloud sent (source `cloud`), unless the visitor says `reportToCloud: false`. */
  reportsToCloud(id: string, property?: string): boolean {
    const device = this.catalog.devices.get(id);
    if (device?.source.file !== `${MODULE.cloud}:${id}`) return false;
    return property === undefined || device.properties.find((p) => p.name === property)?.reportToCloud !== false;
  }

  addSource(source: ObjectSource): Remove {
    this.sources.set(source.name, source);
    return () => this.sources.delete(source.name);
  }

  onChanged(listener: CatalogListener): Remove {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Loads the sources again and applies the difference; rejects when it could not be applied. */
  reload(why: string): Promise<void> {
    const next = this.queue.then(() => this.apply(why));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async apply(why: string): Promise<void> {
    const { log, twins } = this.deps;
    const before = this.catalog;
    const objects: StoredObject[] = [...this.sources.values()].flatMap((source) => source.list().map((o) => ({ ...o, source: source.name })));
    const next = loadCatalog(this.deps.profiles, objects);
    const kept = keepUnreadDevices(before, next);
    const complete = isComplete(next);
    next.errors.push(...this.deps.validate(next));
    for (const error of next.errors) {
      if (next.unread.includes(error.file)) log.warn({ manifest: error.file }, `profile path cannot be read: ${error.reason}`);
      else log.error({ manifest: error.file, document: error.index, path: error.path }, `invalid manifest: ${formatError(error)}`);
    }
    for (const note of next.notes) log.info({ manifest: note.file, document: note.index }, note.note);
    if (kept.length > 0) log.warn({ devices: kept.map((d) => d.id) }, 'devices kept as last loaded: their profiles could not be read or hold invalid documents');
    this.catalog = next;
    const { added, removed, lingering } = this.syncTwins(before, next, complete);
    if (lingering.length > 0) log.warn({ devices: lingering }, 'devices kept in the twin, unserved: no profile read defines them, and not every profile could be read');
    await twins.flushed();
    this.seedChangedDesired(before, next);
    const change: CatalogChange = { devices: this.managed(), models: next.models, added, removed };
    for (const listener of this.listeners) {
      try {
        await listener(change);
      } catch (error) {
        log.error({ err: error }, 'a catalog listener failed');
      }
    }
    if (why !== 'start') log.info({ why, added: added.map((d) => d.id), removed: removed.map((d) => d.id) }, 'devices updated');
  }

  /**
   * New devices and twins are created (seeded with the manifest's values), vanished ones removed:
   * those the last load gave and this one did not keep, and, after a complete load only, those
   * the twin holds from before a restart.
   */
  private syncTwins(previous: Catalog, catalog: Catalog, complete: boolean): { added: DeviceRecord[]; removed: DeviceRecord[]; lingering: string[] } {
    const { twins, node } = this.deps;
    const before = new Set(twins.list().filter((d) => d.managed).map((d) => d.id));
    const added: DeviceRecord[] = [];
    const removed: DeviceRecord[] = [];
    const lingering: string[] = [];
    for (const device of catalog.devices.values()) {
      const model = catalog.models.get(device.modelId)!;
      const desired = new Map(device.properties.map((p) => [p.name, p.desired?.value]));
      const seeds = Object.fromEntries(
        model.properties.map((p) => [p.name, { type: twinType(p.type), desired: desired.get(p.name) ?? undefined, reported: device.reported[p.name]?.value }]),
      );
      const record = twins.upsertDevice({
        id: device.id,
        namespace: device.namespace,
        name: device.name,
        description: device.description,
        managed: isManaged(device.nodeName, node),
        twins: seeds,
      });
      if (record.managed && !before.has(record.id)) added.push(record);
      if (!record.managed && before.has(record.id)) removed.push(record);
    }
    for (const record of twins.list()) {
      if (catalog.devices.has(record.id)) continue;
      if (!previous.devices.has(record.id) && !complete) {
        lingering.push(record.id);
        continue;
      }
      twins.removeDevice(record.id);
      if (before.has(record.id)) removed.push(record);
    }
    return { added, removed, lingering };
  }

  /**
   * A device an object source changed gets the desired values the source changed, with the
   * source as their origin. A profile file only seeds new twins: its desired values are
   * defaults, and a value set since (API, MQTT) is kept.
   */
  private seedChangedDesired(before: Catalog, after: Catalog): void {
    for (const device of after.devices.values()) {
      // An object source's device is read as the file `<source>:<id>` (loadCatalog).
      const source = this.sources.get(device.source.file.slice(0, -device.id.length - 1));
      const previous = before.devices.get(device.id);
      if (!source || device.source.file !== `${source.name}:${device.id}` || !previous) continue;
      const old = new Map(previous.properties.map((p) => [p.name, p.desired?.value]));
      const changed = Object.fromEntries(device.properties.flatMap((p) => (p.desired && p.desired.value !== old.get(p.name) ? [[p.name, p.desired.value]] : [])));
      if (Object.keys(changed).length === 0) continue;
      try {
        this.deps.twins.desire(device.id, changed, source.origin);
      } catch (error) {
        this.deps.log.warn({ device: device.id, source: source.name, err: (error as Error).message }, 'desired values refused');
      }
    }
  }
}
