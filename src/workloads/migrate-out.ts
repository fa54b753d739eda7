/**
 * Live migration of a running workload to a peer, as a list of steps over the mutual-TLS peer
 * channel: the offer (definition, image manifest and this agent's certificate; the peer fetches the
 * artifacts it lacks and starts a guest waiting for the stream), a lease, the bandwidth cap and the
 * downtime aimed at, the migration
 * itself, its completion, the peer's confirmation that the guest runs there, and the end of the
 * copy here. Any failure on the way leaves the workload running here and nothing there.
 *
 * The stream goes QEMU to QEMU over TLS with the two agents' pinned certificates, which the offer
 * and the acceptance exchange (stream-tls.ts): no process of ours sits in its path, so
 * stop-and-copy costs what it costs QEMU alone (the agents' own tunnel tripled the downtime).
 * Beside it the source holds a lease, a raw stream in the peer channel: guests outlive their
 * agent, so when either agent goes away midway the lease's end is what stops the stream (the
 * target drops its guest, the source cancels), as a tunnel through both agents used to.
 */
import { lookup } from 'node:dns/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Duplex } from 'node:stream';
import * as v from 'valibot';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import type { WorkloadDefinition } from './config.js';
import type { WorkloadManager } from './manager.js';
import { scopeOf } from './peer-scope.js';
import { configuredPeer, PeerError, type PeerClient, type PeerConfig } from './peers.js';
import type { PeerIdentity } from './identity.js';
import type { Guest, MigrationInfo } from './runtime.js';
import { runSteps, type Step } from './steps.js';
import { peerCertificate, pinnedStreamTls } from './stream-tls.js';
import type { ImageManifest } from './types.js';
import { parseWith } from '../schema.js';
import type { PathPlacer, Steering } from '../wifi/paths.js';

/** The target fetches what it lacks before it answers the offer: generous for artifacts over a slow link. */
const OFFER_TIMEOUT_MS = 120_000;
const CONFIRM_TIMEOUT_MS = 15_000;
/** How long the source keeps asking for the confirmation the target never answered (a path that died with the question). */
const CONFIRM_PATIENCE_MS = 45_000;
const CONFIRM_RETRY_MS = 1000;
const ABORT_TIMEOUT_MS = 5000;
/** How long the stream waits for a trusted WiFi identity before the migration gives up. */
const PATH_WAIT_MS = 30_000;
/** `workloads.migrationDowntimeLimitMs` unset: measured with the 128 MiB Linux guest, ~5 ms of pause at about QEMU's own total time (config.ts says why below QEMU's 300). */
export const DEFAULT_DOWNTIME_LIMIT_MS = 50;
/** The peer migrates the workload back here; that includes its own offer and artifact checks. */
const RETURN_TIMEOUT_MS = 180_000;

/** Who moves a workload: an operator (the API), the offload policy, or the peer it belongs to taking it back. */
export type MovedBy = 'operator' | 'policy' | 'peer';

export interface MigrationResult {
  workload: string;
  peer: string;
  status: string;
  downtimeMs?: number;
  totalTimeMs?: number;
  transferredBytes?: number;
  artifactsFetched: number;
}

/** What the target answers an offer with: the migration's id, and where its guest waits for the stream with which certificate. */
export const migrationAcceptance = v.object({
  id: v.pipe(v.string(), v.uuid()),
  artifactsFetched: v.pipe(v.number(), v.integer(), v.minValue(0)),
  port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
  certificate: peerCertificate,
});
export type Acceptance = v.InferOutput<typeof migrationAcceptance>;

/** One migration under way: what its steps read and leave for the next. */
interface Departure {
  name: string;
  peer: PeerConfig;
  guest: Guest;
  definition: WorkloadDefinition;
  manifest: ImageManifest;
  started: number;
  /** Who asked: the offload policy brings back only what it moved itself. */
  by: MovedBy;
  accepted?: Acceptance;
  lease?: Duplex;
  /** The routing rule that puts the stream on its path, until the migration ends. */
  steering?: Steering;
  info?: MigrationInfo;
  result?: MigrationResult;
}

export class OutgoingMigrations {
  /** Workloads being migrated out, so that a second request waits for nothing. */
  private readonly moving = new Set<string>();

  private readonly steps: readonly Step<Departure>[] = [
    { name: 'offer', run: (d) => this.offer(d) },
    { name: 'open lease', run: (d) => this.openLease(d) },
    { name: 'set limits', run: (d) => this.setLimits(d) },
    { name: 'migrate', run: (d) => this.startStream(d) },
    { name: 'await completion', run: (d) => this.awaitCompletion(d) },
    { name: 'confirm', run: (d) => this.confirm(d) },
    { name: 'retire source', run: (d) => this.retireSource(d) },
  ];

  constructor(
    private readonly deps: {
      manager: WorkloadManager;
      client: PeerClient;
      identity: PeerIdentity;
      peers: readonly PeerConfig[];
      /** Where the stream leaves from: a trusted WiFi identity, pooled over MPTCP (wifi.sensitive). */
      paths: PathPlacer;
      /** Caps what a migration may take of the link; QEMU's own default otherwise. */
      bandwidthMiBps?: number;
      /** The pause a migration aims at (`workloads.migrationDowntimeLimitMs`); DEFAULT_DOWNTIME_LIMIT_MS otherwise. */
      downtimeLimitMs?: number;
      /** How long the stream may take (`workloads.migrationTimeoutMs`). */
      timeoutMs: number;
      log: Logger;
    },
  ) {}

  /** Moves the running workload `name` to `peerName`; on any failure it keeps running here. */
  async migrate(name: string, peerName: string, by: MovedBy = 'operator'): Promise<MigrationResult> {
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
      started: performance.now(),
      by,
    };
    manager.note(name, 'migration offered', { peer: peerName });
    try {
      await runSteps(this.steps, departure, (step, cause) => failure(departure, step, cause));
      log.info(departure.result, 'workload migrated out');
      return departure.result!;
    } catch (error) {
      if (await this.keepHere(departure)) return await this.movedAfterAll(departure);
      const message = (error as Error).message;
      manager.note(name, 'migration failed', { peer: peerName, error: message });
      log.warn({ workload: name, peer: peerName, err: message }, 'migration failed; the workload keeps running here');
      throw error;
    } finally {
      this.moving.delete(name);
      departure.lease?.destroy();
      await departure.steering?.release();
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
    const answer = await this.deps.client.request<unknown>(d.peer, 'POST', '/v1/migrations', { definition, manifest: d.manifest, certificate: this.deps.identity.certPem }, OFFER_TIMEOUT_MS);
    const parsed = parseWith(migrationAcceptance, answer);
    if (!parsed.ok) throw new PeerError(`peer ${d.peer.name} accepted with an answer this agent cannot use: ${parsed.issues.map((i) => `${i.path || 'answer'}: ${i.message}`).join('; ')}`);
    d.accepted = parsed.value;
  }

  /** Until the copy here is retired, the target's going away cancels the stream: the guest then runs on here. */
  private async openLease(d: Departure): Promise<void> {
    const lease = await this.deps.client.stream(d.peer, `/v1/migrations/${d.accepted!.id}/stream`);
    d.lease = lease;
    lease.on('error', () => undefined);
    lease.once('close', () => {
      if (d.result) return;
      this.deps.log.warn({ workload: d.name, peer: d.peer.name }, 'the peer went away during the migration: cancelling it');
      void d.guest.cancelMigration().catch(() => undefined);
    });
    // Nothing travels on the lease; what the peer might send is read and dropped.
    lease.resume();
  }

  /**
   * QEMU here connects to the one waiting at the peer's address, each end presenting its agent's
   * certificate and taking only the other's pinned one. QEMU cannot bind a source address: a
   * routing rule for the peer's address puts the stream on the trusted identity placed for
   * migrations, and as MPTCP the kernel adds a subflow over each other trusted identity, so the
   * stream is pooled and outlives the loss of one AP.
   */
  private async startStream(d: Departure): Promise<void> {
    const { tls, peerName } = pinnedStreamTls(this.deps.identity, d.peer, d.accepted!.certificate);
    const { address: host } = await lookup(new URL(d.peer.url).hostname.replace(/^\[(.*)\]$/, '$1'));
    await this.deps.paths.whenPlaced('migration', PATH_WAIT_MS);
    d.steering = await this.deps.paths.steer('migration', host);
    this.deps.log.info({ workload: d.name, peer: d.peer.name, path: d.steering.placement, mptcp: d.steering.mptcp, subflows: d.steering.subflows }, 'migration stream placed');
    await d.guest.migrateTo({ host, port: d.accepted!.port, tls, peerName, mptcp: d.steering.mptcp });
  }

  private async setLimits(d: Departure): Promise<void> {
    const { bandwidthMiBps, downtimeLimitMs } = this.deps;
    if (bandwidthMiBps !== undefined) await d.guest.capMigrationBandwidth(bandwidthMiBps * 1024 * 1024);
    await d.guest.limitMigrationDowntime(downtimeLimitMs ?? DEFAULT_DOWNTIME_LIMIT_MS);
  }

  private async awaitCompletion(d: Departure): Promise<void> {
    d.info = await d.guest.awaitMigration(this.deps.timeoutMs);
    if (d.info.status !== 'completed') throw new AgentError(502, `the migration ${d.info.status}${d.info.error ? `: ${d.info.error}` : ''}`);
  }

  /**
   * The target waits until the guest runs there before it says so. A question that got no answer
   * (the path died with it, perhaps after the target adopted the guest) is asked again, from
   * wherever the peer channel leaves by then: the target answers a repeated confirmation as the
   * first. An answer, even a refusal, is final.
   */
  private async confirm(d: Departure): Promise<void> {
    const { downtimeMs, totalTimeMs } = d.info!;
    const deadline = performance.now() + CONFIRM_PATIENCE_MS;
    let confirmed: { status: string } | undefined;
    while (!confirmed) {
      try {
        confirmed = await this.deps.client.request<{ status: string }>(d.peer, 'POST', `/v1/migrations/${d.accepted!.id}/confirm`, { downtimeMs, totalTimeMs }, CONFIRM_TIMEOUT_MS);
      } catch (error) {
        const unanswered = error instanceof PeerError && error.status === undefined;
        if (!unanswered || performance.now() + CONFIRM_RETRY_MS >= deadline) throw error;
        this.deps.log.warn({ workload: d.name, peer: d.peer.name, err: (error as Error).message }, 'no answer to the confirmation: asking again');
        await sleep(CONFIRM_RETRY_MS);
      }
    }
    d.result = resultOf(d, confirmed.status);
  }

  /** The target says the migration it was asked to abort was confirmed: the workload runs there, so the copy here retires. */
  private async movedAfterAll(d: Departure): Promise<MigrationResult> {
    d.result = resultOf(d, 'running');
    await this.retireSource(d);
    this.deps.log.info(d.result, 'workload migrated out (the peer had confirmed it; its answer was lost)');
    return d.result;
  }

  private async retireSource(d: Departure): Promise<void> {
    await this.deps.manager.stop(d.name, 'migrated', { ...d.result, by: d.by, wallMs: Math.round(performance.now() - d.started) }, d.peer.name);
  }

  /**
   * After a failure: the target drops what it started, and the guest here runs on (a failed
   * precopy migration leaves it as it was). Unless the target answers that it confirmed the
   * migration after all (409: the confirmation went through, its answer was lost): then the
   * workload runs there, and the copy here, paused, must not run too. Returns whether it moved.
   */
  private async keepHere(d: Departure): Promise<boolean> {
    if (d.accepted) {
      const moved = await this.deps.client.request(d.peer, 'POST', `/v1/migrations/${d.accepted.id}/abort`, {}, ABORT_TIMEOUT_MS).then(
        () => false,
        (error: unknown) => error instanceof PeerError && error.status === 409,
      );
      if (moved && d.info?.status === 'completed') return true;
    }
    if ((await d.guest.status().catch(() => 'gone')) === 'paused') await d.guest.resume().catch(() => undefined);
    return false;
  }
}

/** A completed migration as it is reported: the target's status of the guest, and what the stream measured. */
function resultOf(d: Departure, status: string): MigrationResult {
  const { downtimeMs, totalTimeMs, transferredBytes } = d.info!;
  return { workload: d.name, peer: d.peer.name, status, downtimeMs, totalTimeMs, transferredBytes, artifactsFetched: d.accepted!.artifactsFetched };
}

/**
 * The error a failed step ends the migration with: it names the step and keeps the cause's
 * status, or the target's refusal (422 for a bad artifact or image, 409 for a name it runs); 502 else.
 */
function failure(d: Departure, step: string, cause: unknown): AgentError {
  const status = cause instanceof AgentError ? cause.status : cause instanceof PeerError && cause.status !== undefined && cause.status < 500 ? cause.status : 502;
  return new AgentError(status, `migration of ${d.name} to ${d.peer.name} failed at ${step}: ${(cause as Error).message}`);
}
