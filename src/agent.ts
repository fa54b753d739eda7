/** Composition root: builds the modules from the config and starts and stops them in order. */
import { join } from 'node:path';
import { builtinMappers } from '../mappers/index.js';
import { createEmbeddedBus } from './bus/embedded.js';
import type { Bus } from './bus/bus.js';
import { KubeEdgeProtocol } from './bus/kubeedge.js';
import { ApiServer } from './api/server.js';
import type { Config } from './config.js';
import type { CloudStatus, EdgeHub } from './cloud/edgehub.js';
import type { Workloads } from './workloads/index.js';
import { formatError, loadCatalog, type Catalog } from './devices/load.js';
import type { Device } from './devices/model.js';
import type { Logger } from './log.js';
import { MapperHost } from './mapperhost/host.js';
import { twinType } from './mapperhost/convert.js';
import { TwinStore } from './twin/store.js';
import { Twins } from './twin/twins.js';
import type { DeviceRecord } from './twin/types.js';
import { Wifi } from './wifi/index.js';

export interface Agent {
  readonly twins: Twins;
  readonly bus: Bus;
  readonly apiPort: number;
  /** The manifests as last loaded. */
  readonly catalog: Catalog;
  readonly wifi: Wifi;
  /** The cloud link, when enabled. */
  readonly cloud?: EdgeHub;
  /** VM and unikernel workloads, when enabled. */
  readonly workloads?: Workloads;
  /** Loads the manifests again and applies the difference, as `membership/updated` announces it. */
  reload(): void;
  stop(): Promise<void>;
}

/** Like EdgeCore, the agent serves the devices bound to its node, and those bound to none. */
function isManaged(nodeName: string | undefined, node: string): boolean {
  return !nodeName || nodeName === node;
}

function logCatalog(catalog: Catalog, log: Logger): void {
  for (const error of catalog.errors) log.error({ manifest: error.file, document: error.index, path: error.path }, `invalid manifest: ${formatError(error)}`);
  for (const note of catalog.notes) log.info({ manifest: note.file, document: note.index }, note.note);
}

function managedDevices(catalog: Catalog, node: string): Device[] {
  return [...catalog.devices.values()].filter((d) => isManaged(d.nodeName, node));
}

/**
 * Brings the twin in line with the manifests: new devices and twins are created, vanished
 * devices removed. Returns the devices this node gained and lost.
 */
function syncCatalog(twins: Twins, catalog: Catalog, node: string): { added: DeviceRecord[]; removed: DeviceRecord[] } {
  const before = new Set(twins.list().filter((d) => d.managed).map((d) => d.id));
  const added: DeviceRecord[] = [];
  const removed: DeviceRecord[] = [];
  for (const device of catalog.devices.values()) {
    const model = catalog.models.get(device.modelId)!;
    const types = new Map(model.properties.map((p) => [p.name, twinType(p.type)]));
    const desired = new Map(device.properties.map((p) => [p.name, p.desired?.value]));
    const seeds = Object.fromEntries(
      model.properties.map((p) => [
        p.name,
        { type: types.get(p.name)!, desired: desired.get(p.name) ?? undefined, reported: device.reported[p.name]?.value },
      ]),
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
    twins.removeDevice(record.id);
    if (before.has(record.id)) removed.push(record);
  }
  return { added, removed };
}

export async function startAgent(config: Config, log: Logger): Promise<Agent> {
  const started = performance.now();
  const store = new TwinStore(join(config.dataDir, 'twin.db'), config.twin.historySize);
  const twins = new Twins(store, (error) => log.error({ err: error }, 'twin listener failed'));

  let catalog: Catalog;
  // Loaded only with the cloud link enabled: WebSocket, TLS and certificate code cost memory.
  const cloud: EdgeHub | undefined = config.cloud.enabled
    ? new (await import('./cloud/edgehub.js')).EdgeHub({
        config: config.cloud,
        node: config.node,
        dataDir: config.dataDir,
        store,
        twins,
        log,
        reports: (id, property): boolean => {
          if (!cloud?.objects.has('device', id)) return false;
          return property === undefined || catalog.devices.get(id)?.properties.find((p) => p.name === property)?.reportToCloud !== false;
        },
        objectsChanged: () => apply('cloud'),
      })
    : undefined;
  const load = () => loadCatalog(config.profiles, cloud?.objects.list() ?? []);
  catalog = load();
  logCatalog(catalog, log);
  syncCatalog(twins, catalog, config.node);
  await twins.flushed();

  // The mqtt client is loaded only for an external broker: on a 1 GB gateway every MB counts.
  const bus = config.mqtt.url
    ? (await import('./bus/external.js')).connectExternalBus(config.mqtt.url, `edge-agent-${config.node}`, log)
    : await createEmbeddedBus({ host: config.mqtt.host, port: config.mqtt.port, log });
  const protocol = new KubeEdgeProtocol({ bus, twins, node: config.node, maxPayloadBytes: config.mqtt.maxPayloadBytes, log });
  await protocol.start();
  await bus.start();

  const wifi = new Wifi(config.wifi, config.node, config.runDir, log);
  const wifiTopic = `edge-agent/node/${config.node}/wifi`;
  wifi.on('changed', (report) => {
    if (bus.wants(wifiTopic)) bus.publish(wifiTopic, JSON.stringify(report));
  });

  // Loaded only when enabled: QEMU control, the peer endpoint and its TLS cost memory.
  const workloads = config.workloads.enabled
    ? new (await import('./workloads/index.js')).Workloads(config.workloads, config.node, config.dataDir, config.runDir, () => wifi.state(), log)
    : undefined;
  await workloads?.start();

  const cloudStatus = (): CloudStatus | { enabled: false } => cloud?.status() ?? { enabled: false };
  const workloadRoutes = workloads && (await import('./workloads/api.js')).workloadsApi(workloads);
  const api = new ApiServer({ host: config.api.host, port: config.api.port, twins, wifi, cloud: cloudStatus, workloads: workloadRoutes, node: config.node, mqttUrl: bus.url, log });
  const apiPort = await api.start();

  const managed = managedDevices(catalog, config.node);
  const host = new MapperHost(builtinMappers, twins, log, bus.url);
  host.start(managed, catalog.models);
  cloud?.start();

  log.info(
    {
      node: config.node,
      mqtt: bus.url,
      api: `http://${config.api.host}:${apiPort}`,
      cloud: config.cloud.enabled ? config.cloud.server : undefined,
      workloads: workloads ? { port: workloads.port, fingerprint: workloads.identity.fingerprint } : undefined,
      devices: catalog.devices.size,
      managed: managed.length,
      readyMs: Math.round(performance.now() - started),
    },
    'agent ready',
  );

  /** Serves the manifests and cloud objects as they are now: only what changed is restarted. */
  let applying = Promise.resolve();
  function apply(why: 'profiles' | 'cloud'): Promise<void> {
    applying = applying.then(async () => {
      const next = load();
      logCatalog(next, log);
      catalog = next;
      const { added, removed } = syncCatalog(twins, catalog, config.node);
      await twins.flushed();
      protocol.announceMembership(added, removed);
      await host.apply(managedDevices(catalog, config.node), catalog.models);
      log.info({ why, added: added.map((d) => d.id), removed: removed.map((d) => d.id) }, 'devices updated');
    });
    return applying;
  }

  return {
    twins,
    bus,
    apiPort,
    wifi,
    cloud,
    workloads,
    get catalog() {
      return catalog;
    },
    reload() {
      apply('profiles').catch((error: unknown) => log.error({ err: error }, 'profile reload failed'));
    },
    async stop() {
      await cloud?.stop();
      await workloads?.stop();
      await applying.catch(() => undefined);
      await host.stop();
      await wifi.stop();
      await api.stop();
      await bus.close();
      await twins.flushed();
      store.close();
      log.info('agent stopped');
    },
  };
}
