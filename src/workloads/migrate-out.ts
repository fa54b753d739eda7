/**
 * Live migration of a running workload to a peer, as a list of steps over the mutual-TLS peer
 * channel: the offer (definition and image manifest; the peer fetches the artifacts it lacks and
 * starts a guest waiting for the stream), a tunnel in the same channel, the bandwidth cap, the
 * migration itself, its completion, the peer's confirmation that the guest runs there, and the
 * end of the copy here. Any failure on the way leaves the workload running here and nothing there.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import type { WorkloadDefinition } from './config.js';
import type { WorkloadManager } from './manager.js';
import { scopeOf } from './peer-scope.js';
import { configuredPeer, PeerError, type PeerClient, type PeerConfig } from './peers.js';
import type { Guest, MigrationInfo } from './runtime.js';
import { splice } from './splice.js';
import { runSteps, type Step } from './steps.js';
import type { ImageManifest } from './types.js';
import { listening } from '../listen.js';

/** Generous: under TCG a 128 MiB guest takes a second or two; a busy gateway more. */
const MIGRATION_TIMEOUT_MS = 120_000;
const CONFIRM_TIMEOUT_MS = 15_000;
const ABORT_TIMEOUT_MS = 5000;
/** The peer migrates the workload back here; that includes its own offer and artifact checks. */
const RETURN_TIMEOUT_MS = 180_000;

export interface MigrationResult {
  workload: string;
  peer: string;
  status: string;
  downtimeMs?: number;
  totalTimeMs?: number;
  transferredBytes?: number;
  artifactsFetched: number;
}

/** What the target answers an offer with. */
export interface Acceptance {
  id: string;
  artifactsFetched: number;
}

/** One migration under way: what its steps read and leave for the next. */
interface Departure {
  name: string;
  peer: PeerConfig;
  guest: Guest;
  definition: WorkloadDefinition;
  manifest: ImageManifest;
  /** The unix socket the guest's state goes into, on its way through the tunnel. */
  socket: string;
  started: number;
  onProgress?: (info: MigrationInfo) => void;
  accepted?: Acceptance;
  tunnel?: Server;
  info?: MigrationInfo;
  result?: MigrationResult;
}

export class OutgoingMigrations {
  /** Workloads being migrated out, so that a second request waits for nothing. */
  private readonly moving = new Set<string>();

  private readonly steps: readonly Step<Departure>[] = [
    { name: 'offer', run: (d) => this.offer(d) },
    { name: 'open tunnel', run: (d) => this.openTunnel(d) },
    { name: 'cap bandwidth', run: (d) => this.capBandwidth(d) },
    { name: 'migrate', run: (d) => d.guest.migrateOut(`unix:${d.socket}`) },
    { name: 'await completion', run: (d) => this.awaitCompletion(d) },
    { name: 'confirm', run: (d) => this.confirm(d) },
    { name: 'retire source', run: (d) => this.retireSource(d) },
  ];

  constructor(
    private readonly deps: {
      manager: WorkloadManager;
      client: PeerClient;
      peers: readonly PeerConfig[];
      /** Caps what a migration may take of the link; QEMU's own default otherwise. */
      bandwidthMiBps?: number;
      log: Logger;
    },
  ) {}

  /** Moves the running workload `name` to `peerName`; on any failure it keeps running here. */
  async migrate(name: string, peerName: string, onProgress?: (info: MigrationInfo) => void): Promise<MigrationResult> {
    const { manager, log } = this.deps;
    const peer = configuredPeer(this.deps.peers, peerName);
    const { peer: owner } = scopeOf(name);
    if (owner && owner !== peerName) throw new AgentError(409, `workload ${name} came from ${owner}: it can only go back there`);
    const guest = manager.guest(name);
    if (!guest) throw new AgentError(409, `workload ${name} is not running here`);
    if (this.moving.has(name)) throw new AgentError(409, `workload ${name} is already being migrated`);
    this.moving.add(name);
    const definition = manager.definition(name);
    const departure: Departure = {
      name,
      peer,
      guest,
      definition,
      manifest: manager.image(definition).manifest,
      socket: manager.runPath(`${name}.out.sock`),
      started: performance.now(),
      onProgress,
    };
    manager.note(name, 'migration offered', { peer: peerName });
    try {
      await runSteps(this.steps, departure, (step, cause) => failure(departure, step, cause));
      log.info(departure.result, 'workload migrated out');
      return departure.result!;
    } catch (error) {
      await this.keepHere(departure);
      const message = (error as Error).message;
      manager.note(name, 'migration failed', { peer: peerName, error: message });
      log.warn({ workload: name, peer: peerName, err: message }, 'migration failed; the workload keeps running here');
      throw error;
    } finally {
      this.moving.delete(name);
      departure.tunnel?.close();
      rmSync(departure.socket, { force: true });
    }
  }

  /** Asks the peer a workload went to for it back; the peer migrates it here. */
  async bringBack(name: string): Promise<MigrationResult> {
    const record = this.deps.manager.record(name);
    if (record?.state !== 'migrated' || !record.movedTo) throw new AgentError(409, `workload ${name} is not away (it is ${record?.state ?? 'unknown'})`);
    const peer = configuredPeer(this.deps.peers, record.movedTo);
    return this.deps.client.request<MigrationResult>(peer, 'POST', `/v1/workloads/${name}/return`, {}, RETURN_TIMEOUT_MS);
  }

  /** The target fetches what it lacks, verifies it, and starts a guest waiting for the stream. A peer's workload goes back under its own name. */
  private async offer(d: Departure): Promise<void> {
    const definition = { ...d.definition, name: scopeOf(d.name).name };
    d.accepted = await this.deps.client.request<Acceptance>(d.peer, 'POST', '/v1/migrations', { definition, manifest: d.manifest }, MIGRATION_TIMEOUT_MS);
  }

  private async openTunnel(d: Departure): Promise<void> {
    const tunnel = await this.deps.client.stream(d.peer, `/v1/migrations/${d.accepted!.id}/stream`);
    d.tunnel = await tunnelFrom(d.socket, tunnel).catch((error: unknown) => {
      tunnel.destroy();
      throw error;
    });
  }

  private async capBandwidth(d: Departure): Promise<void> {
    const { bandwidthMiBps } = this.deps;
    if (bandwidthMiBps !== undefined) await d.guest.capMigrationBandwidth(bandwidthMiBps * 1024 * 1024);
  }

  private async awaitCompletion(d: Departure): Promise<void> {
    d.info = await d.guest.awaitMigration(MIGRATION_TIMEOUT_MS, d.onProgress);
    if (d.info.status !== 'completed') throw new AgentError(502, `the migration ${d.info.status}${d.info.error ? `: ${d.info.error}` : ''}`);
  }

  /** The target waits until the guest runs there before it says so. */
  private async confirm(d: Departure): Promise<void> {
    const { downtimeMs, totalTimeMs, transferredBytes } = d.info!;
    const confirmed = await this.deps.client.request<{ status: string }>(d.peer, 'POST', `/v1/migrations/${d.accepted!.id}/confirm`, { downtimeMs, totalTimeMs }, CONFIRM_TIMEOUT_MS);
    d.result = { workload: d.name, peer: d.peer.name, status: confirmed.status, downtimeMs, totalTimeMs, transferredBytes, artifactsFetched: d.accepted!.artifactsFetched };
  }

  private async retireSource(d: Departure): Promise<void> {
    await this.deps.manager.stop(d.name, 'migrated', { ...d.result, wallMs: Math.round(performance.now() - d.started) }, d.peer.name);
  }

  /** After a failure: the target drops what it started, and the guest here runs on (a failed precopy migration leaves it as it was). */
  private async keepHere(d: Departure): Promise<void> {
    if (d.accepted) await this.deps.client.request(d.peer, 'POST', `/v1/migrations/${d.accepted.id}/abort`, {}, ABORT_TIMEOUT_MS).catch(() => undefined);
    if ((await d.guest.status().catch(() => 'gone')) === 'paused') await d.guest.resume().catch(() => undefined);
  }
}

/**
 * The error a failed step ends the migration with: it names the step and keeps the cause's
 * status, or the target's refusal (422 for a bad artifact or image, 409 for a name it runs); 502 else.
 */
function failure(d: Departure, step: string, cause: unknown): AgentError {
  const status = cause instanceof AgentError ? cause.status : cause instanceof PeerError && cause.status !== undefined && cause.status < 500 ? cause.status : 502;
  return new AgentError(status, `migration of ${d.name} to ${d.peer.name} failed at ${step}: ${(cause as Error).message}`);
}

/** A unix socket QEMU migrates into, whose bytes go through `tunnel` (and back: QEMU's return path). */
async function tunnelFrom(path: string, tunnel: Duplex): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    server.close();
    // A broken stream shows as the migration failing; nothing more to report here.
    void splice(socket, tunnel);
  });
  await listening(server, (done) => server.listen(path, done));
  return server;
}
