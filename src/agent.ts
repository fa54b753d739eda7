/**
 * Composition root: opens the database, builds the shared dependencies and the ordered module
 * list from the config, and starts them (lifecycle.ts rolls back in reverse when one fails).
 * No domain logic here: what a module does lives in its folder.
 */
import { builtinMappers } from '../mappers/builtin.js';
import { healthRoutes } from './api/health.js';
import { memoryRoutes } from './api/memory.js';
import { readyRoutes } from './api/ready.js';
import { ApiServer } from './api/server.js';
import type { Bus } from './bus/bus.js';
import { EmbeddedBus } from './bus/embedded.js';
import { KubeEdgeProtocol } from './bus/kubeedge.js';
import { cloudDisabledRoutes } from './cloud/disabled.js';
import type { EdgeHub } from './cloud/edgehub.js';
import type { Config } from './config.js';
import { Database } from './db/database.js';
import { DeviceCatalog } from './devices/catalog.js';
import { startModules } from './lifecycle.js';
import type { Logger } from './log.js';
import { MapperHost } from './mapperhost/host.js';
import { validateVisitors } from './mapperhost/validate.js';
import { MapperReads } from './metrics/mapper-reads.js';
import { MetricsModule } from './metrics/module.js';
import { workloadsThroughApi } from './metrics/workloads-api.js';
import type { Module } from './module.js';
import { defaultDmiSocket, twinDatabase } from './paths.js';
import { makeDirPrivate, makeRunDirPrivate } from './private-dirs.js';
import { TelemetryModule } from './telemetry/index.js';
import { twinRoutes } from './twin/routes.js';
import { watchFailingWrites } from './twin/failing-writes.js';
import { TwinStore } from './twin/store.js';
import { Twins } from './twin/twins.js';
import { Wifi } from './wifi/wifi.js';
import { workloadsDisabledRoutes } from './workloads/disabled.js';
import type { WorkloadsModule } from './workloads/index.js';

export interface Agent {
  readonly twins: Twins;
  readonly bus: Bus;
  readonly apiPort: number;
  readonly catalog: DeviceCatalog;
  readonly wifi: Wifi;
  /** The cloud link, when enabled. */
  readonly cloud?: EdgeHub;
  /** VM and unikernel workloads, when enabled. */
  readonly workloads?: WorkloadsModule;
  /** Loads the manifests again and applies the difference, as `membership/updated` announces it. */
  reload(): void;
  stop(): Promise<void>;
}

export async function startAgent(config: Config, log: Logger): Promise<Agent> {
  const started = performance.now();
  // Private whether or not the process umask is (cli.ts sets 077; an agent started in-process keeps its host's).
  makeDirPrivate(config.dataDir);
  makeRunDirPrivate(config.runDir);
  const db = new Database(twinDatabase(config.dataDir), { synchronous: config.twin.synchronous, cacheKiB: config.twin.cacheKiB, commitWindowMs: config.twin.commitWindowMs, log });
  const twins = new Twins(new TwinStore(db, config.twin.historySize), (error) => log.error({ err: error }, 'twin listener failed'), config.twin);
  watchFailingWrites({ twins, db, log });
  const catalog = new DeviceCatalog({ profiles: config.profiles, node: config.node, twins, validate: (loaded) => validateVisitors(loaded, builtinMappers), log });
  // The mqtt client is loaded only for an external broker: on a 1 GB gateway every MB counts.
  const bus: Bus = config.mqtt.url
    ? new (await import('./bus/external.js')).ExternalBus(config.mqtt.url, `edge-agent-${config.node}`, log)
    : new EmbeddedBus({ config: config.mqtt, log });
  const wifi = new Wifi({ config: config.wifi, node: config.node, runDir: config.runDir, bus, log });
  const telemetry = new TelemetryModule({ wifi, log });
  // Loaded only when enabled: WebSocket, TLS and certificate code cost memory.
  const cloud = config.cloud.enabled
    ? new (await import('./cloud/edgehub.js')).EdgeHub({ config: config.cloud, node: config.node, dataDir: config.dataDir, db, twins, catalog, telemetry, paths: wifi.paths, log })
    : undefined;
  // Loaded only when enabled: QEMU control, the peer endpoint and its TLS cost memory.
  const workloads = config.workloads.enabled
    ? new (await import('./workloads/index.js')).WorkloadsModule({ config: config.workloads, node: config.node, dataDir: config.dataDir, runDir: config.runDir, telemetry, paths: wifi.paths, log })
    : undefined;

  // Loaded only when enabled: gRPC and protobuf cost memory.
  const dmi = config.dmi.enabled ? await import('./dmi/index.js') : undefined;
  const mappers = dmi ? new dmi.MapperRegistry(db) : undefined;
  const mapperReads = new MapperReads();
  const mapperHost = new MapperHost({ mappers: builtinMappers, twins, catalog, bus, external: mappers, observer: mapperReads, log });
  const embeddedBus = bus instanceof EmbeddedBus ? bus : undefined;
  const metrics = new MetricsModule({
    twins,
    mappers: mapperReads,
    broker: embeddedBus && (() => embeddedBus.stats()),
    cloud: cloud && (() => cloud.status()),
    wifi: () => wifi.state(),
    workloads: workloads && workloadsThroughApi(workloads.routes),
    log,
  });

  // Start order: the cloud's stored Devices are a catalog source before its first load; the
  // protocol's handlers exist before the bus listens; the API opens last, on a running agent.
  // Metrics listen first, so the twin updates of every later start are counted.
  const modules: Module[] = [
    metrics,
    telemetry,
    ...(cloud ? [cloud] : []),
    catalog,
    new KubeEdgeProtocol({ bus, twins, catalog, node: config.node, maxPayloadBytes: config.mqtt.maxPayloadBytes, kubeedgeVersion: config.cloud.kubeedgeVersion, log }),
    bus,
    wifi,
    ...(workloads ? [workloads] : []),
    ...(dmi && mappers ? [new dmi.DmiModule({ config: config.dmi, socket: config.dmi.socket ?? defaultDmiSocket(process.getuid?.(), config.runDir), registry: mappers, catalog, twins, log })] : []),
    mapperHost,
  ];
  const servedBy = (id: string) => {
    const device = catalog.current.devices.get(id);
    return device && mapperHost.servedBy(device);
  };
  const routes = [
    ...healthRoutes(config.node, bus, db),
    ...readyRoutes({ bus, database: db, databaseFile: twinDatabase(config.dataDir), cloud: cloud && (() => cloud.status().link) }),
    ...twinRoutes(twins, servedBy),
    ...memoryRoutes(() => db.cacheKiB * 1024),
    ...(cloud ? [] : cloudDisabledRoutes),
    ...(workloads ? [] : workloadsDisabledRoutes),
    ...modules.flatMap((module) => module.routes ?? []),
  ];
  const api = new ApiServer({ config: config.api, dataDir: config.dataDir, routes, log });
  modules.push(api);

  let running;
  try {
    running = await startModules(modules, log);
  } catch (error) {
    await twins.flushed().catch(() => undefined);
    db.close();
    throw error;
  }

  log.info(
    {
      node: config.node,
      mqtt: bus.url,
      api: `http://${config.api.host}:${api.port}`,
      apiSocket: config.api.socket,
      apiTokenFile: api.tokenFile,
      cloud: config.cloud.enabled ? config.cloud.server : undefined,
      workloads: workloads?.endpoint(),
      devices: catalog.current.devices.size,
      managed: catalog.managed().length,
      readyMs: Math.round(performance.now() - started),
    },
    'agent ready',
  );

  return {
    twins,
    bus,
    apiPort: api.port,
    catalog,
    wifi,
    cloud,
    workloads,
    reload() {
      catalog.reload('profiles').catch((error: unknown) => log.error({ err: error }, 'profile reload failed'));
    },
    async stop() {
      await running.stop();
      await twins.flushed().catch((error: unknown) => log.error({ err: error }, 'last commit failed'));
      db.close();
      log.info('agent stopped');
    },
  };
}
