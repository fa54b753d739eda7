/**
 * KubeEdge's Device Management Interface: the DeviceManagerService on a unix socket, where
 * mapper-framework mappers (KubeEdge ≥ 1.15) register, report twins and states, and from where the
 * agent hands them their devices and models. Loaded only when enabled.
 */
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { dirname } from 'node:path';
import { tryConnect } from '../connects.js';
import type { DeviceCatalog } from '../devices/catalog.js';
import { AgentError, ConfigError } from '../errors.js';
import type { Route } from '../http/router.js';
import { listening, removeLeftSocket } from '../listen.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { TwinChange, Twins } from '../twin/twins.js';
import type { DmiConfig } from './config.js';
import type { Engine } from './engine.js';
import type { MapperRegistry, RegisteredMapper } from './registry.js';

/** How long a probe waits for a mapper's socket to accept. */
const PROBE_TIMEOUT_MS = 1000;

export interface DmiStatus {
  socket: string;
  mappers: Array<RegisteredMapper & { unreachable?: string }>;
}

export interface DmiDeps {
  config: DmiConfig;
  /** The socket to serve on. */
  socket: string;
  registry: MapperRegistry;
  catalog: DeviceCatalog;
  twins: Twins;
  log: Logger;
}

/** Whether the twin change sets a desired value: the mapper needs the device again. A mapper's own reports never do. */
function setsDesired(change: TwinChange): boolean {
  return change.origin !== 'mapper' && Object.values(change.result).some((twin) => twin?.expected !== undefined);
}

export class DmiModule implements Module {
  readonly name = MODULE.dmi;
  private listener?: NetServer;
  private removers: Remove[] = [];
  private probeTimer?: NodeJS.Timeout;
  private readonly stopping = new AbortController();
  private loaded?: Promise<Engine>;
  /** The engine once loaded, for answers that must not load it. */
  private engineNow?: Engine;
  readonly routes: readonly Route[];

  constructor(private readonly deps: DmiDeps) {
    this.routes = [
      { method: 'GET', path: '/api/v1/dmi', handle: () => this.status() },
      {
        // A mapper uninstalled for good: its protocol goes back to the built-in mappers.
        method: 'DELETE',
        path: '/api/v1/dmi/mappers/:protocol',
        handle: async ({ params }) => {
          if (!deps.registry.get(params.protocol!)) throw new AgentError(404, `no DMI mapper registered for protocol ${params.protocol}`);
          await deps.registry.forget(params.protocol!);
          return this.status();
        },
      },
    ];
  }

  /** `GET /api/v1/dmi`: the socket, and each registered mapper with whether it answers now. */
  private status(): DmiStatus {
    const unreachable = (protocol: string) => this.engineNow?.sync.unreachableReason(protocol);
    return { socket: this.deps.socket, mappers: this.deps.registry.list().map((m) => ({ ...m, unreachable: unreachable(m.protocol) })) };
  }

  async start(): Promise<void> {
    const { config, socket, registry, catalog, twins, log } = this.deps;
    mkdirSync(dirname(socket), { recursive: true });
    // EdgeCore removes a stale socket before it listens; anything else at the path is a config error, not ours to delete.
    if (!(await removeLeftSocket(socket))) throw new ConfigError(`dmi.socket: ${socket} exists and is not a socket`);
    // A plain listener: the gRPC engine is loaded when the first mapper connects, and the
    // connection waits (paused, nothing read) until it is.
    const listener = createServer({ pauseOnConnect: true }, (connection) => {
      this.engine().then(
        (engine) => engine.serve(connection),
        (error: unknown) => {
          log.error({ err: error }, 'DMI engine failed to load');
          connection.destroy();
        },
      );
    });
    this.listener = listener;
    await listening(listener, (done) => listener.listen(socket, done));
    // Who may attach is who may open the socket: the agent's user (and root).
    chmodSync(socket, 0o600);
    const scheduleAll = () => {
      if (registry.list().length === 0) return;
      void this.engine().then((engine) => {
        for (const mapper of registry.list()) void engine.sync.schedule(mapper.protocol);
      });
    };
    this.removers = [
      catalog.onChanged(scheduleAll),
      twins.onChange((change) => {
        const protocol = catalog.current.devices.get(change.deviceId)?.protocol.name;
        if (protocol && registry.serves(protocol) && setsDesired(change)) void this.engine().then((engine) => engine.sync.schedule(protocol));
      }),
    ];
    // Mappers registered before a restart: what changed while the agent was down reaches them now.
    scheduleAll();
    // Probes only while there is a mapper to probe: an agent without DMI mappers does not wake up for them.
    const armProbes = () => {
      if (this.probeTimer || registry.list().length === 0) return;
      this.probeTimer = setInterval(() => void this.probeAll(), config.probeIntervalMs).unref();
    };
    armProbes();
    this.removers.push(registry.onChanged(armProbes));
    log.info({ socket, mappers: registry.list().map((m) => `${m.name} (${m.protocol})`) }, 'DMI serving');
  }

  private engine(): Promise<Engine> {
    this.loaded ??= import('./engine.js').then(({ createEngine }) => {
      this.engineNow = createEngine({ config: this.deps.config, registry: this.deps.registry, catalog: this.deps.catalog, twins: this.deps.twins, signal: this.stopping.signal, log: this.deps.log });
      return this.engineNow;
    });
    return this.loaded;
  }

  private async probeAll(): Promise<void> {
    for (const mapper of this.deps.registry.list()) {
      const error = await tryConnect({ path: mapper.address }, PROBE_TIMEOUT_MS);
      if (this.stopping.signal.aborted) return;
      const { sync } = await this.engine();
      if (!error) sync.reachable(mapper.protocol);
      else sync.lost(mapper.protocol, `DMI mapper ${mapper.name} does not listen at ${mapper.address}: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
    }
  }

  async stop(): Promise<void> {
    for (const remove of this.removers.splice(0)) remove();
    clearInterval(this.probeTimer);
    this.stopping.abort();
    const listener = this.listener;
    if (listener) await new Promise((resolve) => listener.close(resolve));
    await (await this.loaded?.catch(() => undefined))?.stop();
  }
}
