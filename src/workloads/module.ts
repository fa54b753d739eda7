/**
 * The workloads module: the manager and its QEMU runtime, this agent's peer identity and endpoint,
 * migrations both ways, on-demand listeners and the offload policy's loop. All of it is built and
 * opened in `start`; `stop` releases whatever exists, also after a start that failed halfway.
 */
import { join } from 'node:path';
import { AgentError, ConfigError } from '../errors.js';
import type { Route } from '../http/router.js';
import type { Logger } from '../log.js';
import { MODULE, type Module } from '../module.js';
import type { TelemetryModule } from '../telemetry/index.js';
import type { PathPlacer } from '../wifi/paths.js';
import { localRoutes, type IdentityAnswer, type LocalApiParts } from './api.js';
import type { WorkloadsConfig } from './config.js';
import { identityDir, loadOrCreateIdentity } from './identity.js';
import { WorkloadManager } from './manager.js';
import { IncomingMigrations } from './migrate-in.js';
import { OutgoingMigrations } from './migrate-out.js';
import { OnDemandWorkload } from './on-demand.js';
import { peerRoutes, peerStream, type PeerApiParts } from './peer-api.js';
import { PeerClient, PeerServer } from './peers.js';
import { PolicyLoop } from './policy-loop.js';
import { QemuRuntime } from './qemu/runtime.js';

export interface WorkloadsDeps {
  config: WorkloadsConfig;
  /** This agent's node name: the name in its peer certificate. */
  node: string;
  dataDir: string;
  runDir: string;
  /** What the offload policy decides on, and where reported values go. */
  telemetry: TelemetryModule;
  /** Where the peer channel and the migration stream leave from (wifi.sensitive). */
  paths: PathPlacer;
  log: Logger;
}

/** What `start` built. */
interface Parts extends LocalApiParts, PeerApiParts {
  server: PeerServer;
  onDemand: OnDemandWorkload[];
}

export class WorkloadsModule implements Module {
  readonly name = MODULE.workloads;
  readonly routes: readonly Route[];
  private readonly log: Logger;
  private parts?: Parts;

  constructor(private readonly deps: WorkloadsDeps) {
    this.log = deps.log.child({ module: MODULE.workloads });
    this.routes = localRoutes(() => this.started());
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, node, dataDir, telemetry, paths } = this.deps;
    const log = this.log;
    const runDir = join(this.deps.runDir, 'workloads');
    // In the data dir, which is this agent's alone: the run dir may be shared with another agent.
    const pidDir = join(dataDir, 'workloads', 'pids');
    const identity = loadOrCreateIdentity(identityDir(dataDir), node);
    const runtime = new QemuRuntime({ runDir, pidDir, consoleMaxBytes: config.consoleMaxBytes }, log);
    const manager = new WorkloadManager({ config, dataDir, runDir, runtime, log });
    const client = new PeerClient(identity, log, paths);
    const outgoing = new OutgoingMigrations({ manager, client, identity, peers: config.peers, paths, bandwidthMiBps: config.migrationBandwidthMiBps, downtimeLimitMs: config.migrationDowntimeLimitMs, timeoutMs: config.migrationTimeoutMs, log });
    const incoming = new IncomingMigrations({ manager, client, identity, streamHost: config.listen.host, limits: config, log });
    const server = new PeerServer({
      identity,
      peers: config.peers,
      listen: config.listen,
      log,
      routes: peerRoutes({ manager, incoming, outgoing }),
      stream: peerStream(incoming),
    });
    const policy = new PolicyLoop({ config, telemetry, manager, outgoing, log });
    const parts: Parts = { manager, outgoing, incoming, server, policy, onDemand: [], endpoint: () => ({ fingerprint: identity.fingerprint, port: server.port }) };
    this.parts = parts;

    await manager.start();
    signal.throwIfAborted();
    await server.start();
    for (const definition of config.workloads) {
      if (!definition.onDemand) continue;
      if (definition.ports.length === 0) throw new ConfigError(`on-demand workload ${definition.name} publishes no port`);
      const listener = new OnDemandWorkload({ ...definition, onDemand: definition.onDemand }, manager, log);
      parts.onDemand.push(listener);
      await listener.start();
    }
    policy.start();
    log.info({ port: server.port, fingerprint: identity.fingerprint, peers: config.peers.map((p) => p.name) }, 'workload endpoint listening');
  }

  async stop(): Promise<void> {
    const parts = this.parts;
    if (!parts) return;
    this.parts = undefined;
    parts.policy.stop();
    for (const listener of parts.onDemand) await listener.stop();
    await parts.incoming.stop();
    await parts.server.stop();
    await parts.manager.stopAll();
  }

  /** Where peers reach this agent: its peer port and certificate fingerprint. */
  endpoint(): IdentityAnswer {
    return this.started().endpoint();
  }

  private started(): Parts {
    if (!this.parts) throw new AgentError(503, 'workloads are not started');
    return this.parts;
  }
}
