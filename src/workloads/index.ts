/**
 * The workloads feature as the agent composes it: the manager, this agent's peer identity and
 * endpoint, migrations, on-demand listeners and the offload policy's loop.
 */
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { WifiReport } from '../wifi/wifi.js';
import type { WorkloadsConfig } from './config.js';
import { loadOrCreateIdentity, type PeerIdentity } from './identity.js';
import { WorkloadError, WorkloadManager, type WorkloadView } from './manager.js';
import { Migrations, type MigrationResult } from './migration.js';
import { OnDemandWorkload } from './on-demand.js';
import { PeerClient, PeerServer, type PeerConfig, type PeerHandler } from './peers.js';
import { OffloadPolicy, type Decision } from './policy.js';
import { TelemetrySource, type ReportedTelemetry } from '../telemetry/index.js';

const ARTIFACT = /^\/v1\/artifacts\/([0-9a-f]{64})$/;
const MIGRATION = /^\/v1\/migrations\/([0-9a-f-]{36})\/(confirm|abort|stream)$/;
const RETURN = /^\/v1\/workloads\/([a-z0-9-]+)\/return$/;

export interface PolicyState {
  enabled: boolean;
  target?: string;
  last?: Decision & { telemetry: unknown; moved: string[] };
}

export function identityDir(dataDir: string): string {
  return join(dataDir, 'workloads');
}

export class Workloads {
  readonly manager: WorkloadManager;
  readonly identity: PeerIdentity;
  private readonly client: PeerClient;
  private readonly server: PeerServer;
  private readonly migrations: Migrations;
  private readonly onDemand: OnDemandWorkload[] = [];
  private readonly telemetry: TelemetrySource;
  private readonly policy: OffloadPolicy;
  private policyTimer?: NodeJS.Timeout;
  private lastDecision?: PolicyState['last'];
  private peerPort = 0;

  constructor(
    private readonly config: WorkloadsConfig,
    node: string,
    dataDir: string,
    runDir: string,
    wifi: () => WifiReport,
    private readonly log: Logger,
  ) {
    this.log = log.child({ module: 'workloads' });
    this.manager = new WorkloadManager(config, dataDir, runDir, this.log);
    this.identity = loadOrCreateIdentity(identityDir(dataDir), node);
    this.client = new PeerClient(this.identity, this.log);
    this.migrations = new Migrations(this.manager, this.client, config.peers, config.migrationBandwidthMiBps, this.log);
    this.server = new PeerServer({
      identity: this.identity,
      peers: config.peers,
      host: config.listen.host,
      port: config.listen.port,
      log: this.log,
      handle: this.handle,
      stream: ({ path }, socket) => {
        const match = MIGRATION.exec(path);
        if (match?.[2] === 'stream') this.migrations.stream(match[1]!, socket);
        else socket.destroy();
      },
    });
    this.telemetry = new TelemetrySource(wifi);
    this.policy = new OffloadPolicy(config.policy);
  }

  async start(): Promise<void> {
    await this.manager.start();
    this.peerPort = await this.server.start();
    for (const definition of this.config.workloads) {
      if (!definition.onDemand) continue;
      if (definition.ports.length === 0) throw new WorkloadError(400, `on-demand workload ${definition.name} publishes no port`);
      const listener = new OnDemandWorkload({ ...definition, onDemand: definition.onDemand }, this.manager, this.log);
      await listener.start();
      this.onDemand.push(listener);
    }
    if (this.config.policy.enabled) this.schedulePolicy();
    this.log.info({ port: this.peerPort, fingerprint: this.identity.fingerprint, peers: this.config.peers.map((p) => p.name) }, 'workload endpoint listening');
  }

  async stop(): Promise<void> {
    clearTimeout(this.policyTimer);
    for (const listener of this.onDemand) await listener.stop();
    await this.migrations.stop();
    await this.server.stop();
    await this.manager.stopAll();
  }

  get port(): number {
    return this.peerPort;
  }

  list(): WorkloadView[] {
    return this.manager.list();
  }

  migrate(name: string, peer: string): Promise<MigrationResult> {
    return this.migrations.migrateOut(name, peer);
  }

  /** Asks the peer a workload went to for it back; the peer migrates it here. */
  async bringBack(name: string): Promise<MigrationResult> {
    const record = this.manager.store.get(name);
    if (record?.state !== 'migrated' || !record.movedTo) throw new WorkloadError(409, `workload ${name} is not away (it is ${record?.state ?? 'unknown'})`);
    return this.client.request<MigrationResult>(this.migrations.peer(record.movedTo), 'POST', `/v1/workloads/${name}/return`, {}, 180_000);
  }

  reportTelemetry(values: ReportedTelemetry): ReportedTelemetry {
    const reported = this.telemetry.report(values);
    // New inputs are looked at now, not at the next tick.
    if (this.config.policy.enabled) this.schedulePolicy(0);
    return reported;
  }

  policyState(): PolicyState {
    return { enabled: this.config.policy.enabled, target: this.config.policy.target, last: this.lastDecision };
  }

  onDemandState(): Array<ReturnType<OnDemandWorkload['state']>> {
    return this.onDemand.map((listener) => listener.state());
  }

  private schedulePolicy(delay = this.config.policy.intervalMs): void {
    clearTimeout(this.policyTimer);
    this.policyTimer = setTimeout(() => void this.evaluatePolicy().finally(() => this.schedulePolicy()), delay);
  }

  private async evaluatePolicy(): Promise<void> {
    const target = this.config.policy.target!;
    const trusted = this.config.peers.find((p) => p.name === target)?.trusted === true;
    const views = this.manager.list();
    const away = views.filter((w) => w.state === 'migrated' && w.movedTo === target);
    const telemetry = await this.telemetry.read();
    const decision = this.policy.evaluate(telemetry, away.length > 0);
    const moved: string[] = [];
    if (decision.verdict === 'out') {
      const movable = views.filter((w) => w.pid !== undefined && w.origin === 'local' && !w.definition.onDemand && (w.definition.placement === 'any' || (w.definition.placement === 'trusted' && trusted)));
      for (const workload of movable) {
        await this.migrate(workload.name, target).then(
          () => moved.push(workload.name),
          (error: Error) => this.log.warn({ workload: workload.name, err: error.message }, 'offload failed'),
        );
      }
    } else if (decision.verdict === 'back') {
      for (const workload of away) {
        await this.bringBack(workload.name).then(
          () => moved.push(workload.name),
          (error: Error) => this.log.warn({ workload: workload.name, err: error.message }, 'bringing back failed'),
        );
      }
    }
    this.lastDecision = { ...decision, telemetry, moved };
    if (decision.verdict !== 'stay') this.log.info({ verdict: decision.verdict, reasons: decision.reasons, moved }, 'offload policy acted');
  }

  private readonly handle: PeerHandler = async ({ peer, method, path, body }) => {
    try {
      return await this.route(peer, method, path, body);
    } catch (error) {
      if (error instanceof WorkloadError) return { status: error.status, body: { error: error.message } };
      this.log.error({ peer: peer.name, path, err: (error as Error).message }, 'peer request failed');
      return { status: 500, body: { error: (error as Error).message } };
    }
  };

  private async route(peer: PeerConfig, method: string, path: string, body: unknown): ReturnType<PeerHandler> {
    if (method === 'POST' && path === '/v1/migrations') return { status: 200, body: await this.migrations.accept(peer, body) };
    const migration = MIGRATION.exec(path);
    if (method === 'POST' && migration?.[2] === 'confirm') return { status: 200, body: await this.migrations.confirm(migration[1]!, body) };
    if (method === 'POST' && migration?.[2] === 'abort') {
      await this.migrations.abort(migration[1]!, `${peer.name} aborted it`);
      return { status: 200, body: {} };
    }
    const artifact = ARTIFACT.exec(path);
    if (method === 'GET' && artifact) {
      const sha256 = artifact[1]!;
      const known = [...this.manager.images.values()].some((image) => image.manifest.artifacts.some((a) => a.sha256 === sha256));
      if (!known || !this.manager.imageStore.has(sha256)) throw new WorkloadError(404, `no artifact ${sha256} here`);
      return { status: 200, stream: createReadStream(this.manager.imageStore.path(sha256)) };
    }
    const back = RETURN.exec(path);
    if (method === 'POST' && back) {
      const name = back[1]!;
      const record = this.manager.store.get(name);
      if (record?.origin !== `peer:${peer.name}`) throw new WorkloadError(403, `workload ${name} did not come from ${peer.name}`);
      const result = await this.migrations.migrateOut(name, peer.name);
      this.manager.remove(name);
      return { status: 200, body: result };
    }
    if (method === 'GET' && path === '/v1/workloads') return { status: 200, body: { workloads: this.manager.list() } };
    throw new WorkloadError(404, `no route for ${method} ${path}`);
  }
}
