/**
 * The target's side of a live migration: a peer's offer is accepted once the image can run here
 * and its artifacts, fetched from the peer when missing, match their sizes and digests; a guest then
 * waits for the stream, which its QEMU takes over TLS only from the peer's pinned certificate
 * (stream-tls.ts), and becomes a workload of this agent only when the peer confirms and the guest
 * runs. Whatever fails on the way, nothing of it stays.
 *
 * What a peer sends is kept as the peer's: its workload here is `<peer>.<name>` (peer-scope.ts)
 * with restricted networking, its image is filed under the peer, and neither replaces anything
 * of this agent's. Only a workload of this agent's own coming back keeps its name, and runs by
 * this agent's definition and image again.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import * as v from 'valibot';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import { workloadDefinition, type WorkloadDefinition } from './config.js';
import type { PeerIdentity } from './identity.js';
import { checkRunnable, imageManifest } from './image.js';
import type { WorkloadManager } from './manager.js';
import type { Acceptance } from './migrate-out.js';
import { peerScoped } from './peer-scope.js';
import { PeerError, type PeerClient, type PeerConfig } from './peers.js';
import type { Guest } from './runtime.js';
import { guestSize, type ImageManifest } from './types.js';
import { peerCertificate, pinnedStreamTls } from './stream-tls.js';

const CONFIRM_TIMEOUT_MS = 15_000;
/** Confirmed migrations remembered, so a source asking again hears the same answer. */
const REMEMBERED_CONFIRMATIONS = 100;
/** An accepted migration whose source never takes its lease is given up. */
const INCOMING_TIMEOUT_MS = 60_000;
const STATUS_POLL_MS = 20;

/**
 * A peer's offer: the workload as it is defined there, the image it runs (every field that reaches
 * QEMU checked by imageManifest), and the certificate its QEMU will present on the stream.
 */
export const migrationOffer = v.object({ definition: workloadDefinition, manifest: imageManifest, certificate: peerCertificate });
export type MigrationOffer = v.InferOutput<typeof migrationOffer>;

/** The source's word that its side completed, with what it measured. */
export const migrationConfirmation = v.object({ downtimeMs: v.optional(v.number()), totalTimeMs: v.optional(v.number()) });
export type MigrationConfirmation = v.InferOutput<typeof migrationConfirmation>;

/** Who an offered workload is here: its name, definition and origin. */
interface Newcomer {
  name: string;
  definition: WorkloadDefinition;
  /** `local` for one of ours coming back, else `peer:<name>`. */
  origin: string;
  /** One of ours coming back: its image is ours, nothing to fetch. */
  returning: boolean;
}

/** What this agent takes from a peer's offer (`workloads.maxArtifactBytes`, `transferTimeoutMs`, `peerMemoryMiB`, `peerCpus`). */
export interface TransferLimits {
  maxArtifactBytes: number;
  transferTimeoutMs: number;
  peerMemoryMiB: number;
  peerCpus: number;
}

interface Arrival extends Newcomer {
  id: string;
  peer: string;
  guest: Guest;
  timer: NodeJS.Timeout;
  /** The source's lease (migrate-out.ts): its end before the confirmation means the source went away. */
  lease?: Duplex;
  artifactsFetched: number;
  /** The confirmation under way: a source asking twice waits for the same one. */
  confirming?: Promise<{ status: string }>;
}

export class IncomingMigrations {
  private readonly arrivals = new Map<string, Arrival>();
  /**
   * Migrations confirmed lately, by id: the answer to a confirmation can be lost with the path it
   * went on, after the guest became ours; the source asking again must hear that it runs here,
   * not that there is no such migration (it would run its copy on: two guests).
   */
  private readonly confirmed = new Map<string, { peer: string; status: string }>();

  constructor(
    private readonly deps: {
      manager: WorkloadManager;
      client: PeerClient;
      identity: PeerIdentity;
      /** The address guests waiting for a stream listen on: the peer endpoint's (`workloads.listen.host`). */
      streamHost: string;
      limits: TransferLimits;
      log: Logger;
    },
  ) {}

  /** An offer from `peer`: fetch what is missing, verify, start a guest waiting for the stream. */
  async accept(peer: PeerConfig, offer: MigrationOffer): Promise<Acceptance> {
    const { manager, identity, streamHost, log } = this.deps;
    const { tls } = pinnedStreamTls(identity, peer, offer.certificate);
    const newcomer = this.newcomer(peer, offer);
    const { name } = newcomer;
    if (manager.guest(name) || [...this.arrivals.values()].some((a) => a.name === name)) throw new AgentError(409, `workload ${name} already runs here`);
    let artifactsFetched = 0;
    if (!newcomer.returning) {
      const refusal = checkRunnable(offer.manifest);
      if (refusal) throw new AgentError(422, `workload ${offer.definition.name}: ${refusal}`);
      this.checkResources(newcomer.definition, offer.manifest);
      this.checkSizes(offer.manifest.artifacts);
      artifactsFetched = await this.fetchArtifacts(peer, offer.manifest.artifacts);
      manager.addPeerImage(peer.name, offer.manifest);
    }
    const id = randomUUID();
    const { guest, port } = await manager.receive(newcomer.definition, { host: streamHost, tls });
    const timer = setTimeout(() => void this.abort(id, 'the source did not take its lease in time'), INCOMING_TIMEOUT_MS);
    const arrival: Arrival = { ...newcomer, id, peer: peer.name, guest, timer, artifactsFetched };
    this.arrivals.set(id, arrival);
    // The guest ends by itself when an incoming migration fails (the source vanished, the stream broke).
    void guest.exited.then(() => {
      if (this.arrivals.get(id) === arrival) void this.abort(id, 'the guest ended during the incoming migration');
    });
    log.info({ workload: name, peer: peer.name, id, artifactsFetched, port }, 'incoming migration accepted');
    return { id, artifactsFetched, port, certificate: identity.certPem };
  }

  /**
   * What a peer's workload may take here: at most `peerCpus` CPUs, and with the peers' workloads
   * already here and arriving, at most `peerMemoryMiB` of memory. A peer chooses what its workload
   * asks for; this agent chooses how much of its host peers get.
   */
  private checkResources(definition: WorkloadDefinition, manifest: ImageManifest): void {
    const { peerMemoryMiB, peerCpus } = this.deps.limits;
    const { memoryMiB: memory, cpus } = guestSize(definition, manifest);
    if (cpus > peerCpus) throw new AgentError(422, `workload ${definition.name} asks for ${cpus} CPUs; a peer's workload gets at most ${peerCpus} here (workloads.peerCpus)`);
    const { manager } = this.deps;
    const memoryOf = (d: WorkloadDefinition) => guestSize(d, manager.image(d).manifest).memoryMiB;
    const running = manager
      .list()
      .filter((w) => w.origin.startsWith('peer:') && manager.guest(w.name))
      .reduce((sum, w) => sum + memoryOf(w.definition), 0);
    const arriving = [...this.arrivals.values()].filter((a) => !a.returning).reduce((sum, a) => sum + memoryOf(a.definition), 0);
    if (running + arriving + memory > peerMemoryMiB) {
      throw new AgentError(422, `workload ${definition.name} asks for ${memory} MiB; peers' workloads here have ${running + arriving} of at most ${peerMemoryMiB} MiB (workloads.peerMemoryMiB)`);
    }
  }

  /** A workload of ours that went to `peer` comes back as it is defined here; any other is the peer's. */
  private newcomer(peer: PeerConfig, { definition }: MigrationOffer): Newcomer {
    const { manager } = this.deps;
    const record = manager.record(definition.name);
    if (record?.state === 'migrated' && record.movedTo === peer.name) {
      return { name: definition.name, definition: manager.definition(definition.name), origin: record.origin, returning: true };
    }
    const name = peerScoped(peer.name, definition.name);
    // This agent's config grants the LAN to its own workloads only: a peer's guest answers on its published ports, nothing more.
    return { name, definition: { ...definition, name, network: 'restricted' }, origin: `peer:${peer.name}`, returning: false };
  }

  /** Refuses an image with an artifact larger than this agent takes from a peer, before anything is fetched. */
  private checkSizes(artifacts: MigrationOffer['manifest']['artifacts']): void {
    const { maxArtifactBytes } = this.deps.limits;
    for (const { role, file, size } of artifacts) {
      if (size > maxArtifactBytes) throw new AgentError(413, `artifact ${role} (${file}) is ${size} bytes, more than the ${maxArtifactBytes} this agent takes from a peer (workloads.maxArtifactBytes)`);
    }
  }

  /**
   * Fetches from `peer` the artifacts the store lacks, each cut off past its declared size and
   * verified against its digest, all of them within the transfer deadline; says how many it fetched.
   */
  private async fetchArtifacts(peer: PeerConfig, artifacts: MigrationOffer['manifest']['artifacts']): Promise<number> {
    const { manager, client, limits, log } = this.deps;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new PeerError(`the transfer from ${peer.name} took longer than ${limits.transferTimeoutMs} ms (workloads.transferTimeoutMs)`)),
      limits.transferTimeoutMs,
    );
    let fetched = 0;
    try {
      for (const artifact of artifacts) {
        if (manager.hasArtifact(artifact.sha256)) continue;
        try {
          const stream = await client.download(peer, `/v1/artifacts/${artifact.sha256}`, {
            signal: deadline.signal,
            onProgress: (bytes) => {
              if (bytes === artifact.size) log.info({ artifact: artifact.file, bytes }, 'artifact fetched');
            },
          });
          await manager.storeArtifact(stream, artifact);
        } catch (error) {
          throw new AgentError(422, `artifact ${artifact.role} (${artifact.file}) from ${peer.name} refused: ${(error as Error).message}`);
        }
        fetched++;
      }
    } finally {
      clearTimeout(timer);
    }
    return fetched;
  }

  /** The source's lease on migration `id`: while it lasts the source is there; once it ends unconfirmed, the arrival is given up. */
  lease(peer: string, id: string, socket: Duplex): void {
    const arrival = this.arrivals.get(id);
    if (!arrival || arrival.peer !== peer || arrival.lease) {
      socket.destroy();
      return;
    }
    arrival.lease = socket;
    // From here the lease's end decides, not a clock: over a slow link a guest takes minutes to move, and the source bounds its own wait.
    clearTimeout(arrival.timer);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      if (this.arrivals.get(id) === arrival && !arrival.confirming) void this.abort(id, 'the source went away during the migration');
    });
    socket.resume();
  }

  /** The source `peer` says its side completed: wait until the guest runs here, then it is ours. Asked again, the same answer. */
  confirm(peer: string, id: string, stats: MigrationConfirmation): Promise<{ status: string }> {
    const done = this.confirmed.get(id);
    if (done?.peer === peer) return Promise.resolve({ status: done.status });
    const arrival = this.arrivals.get(id);
    if (!arrival || arrival.peer !== peer) return Promise.reject(new AgentError(404, `no incoming migration ${id}`));
    arrival.confirming ??= this.settle(arrival, stats);
    return arrival.confirming;
  }

  private async settle(arrival: Arrival, stats: MigrationConfirmation): Promise<{ status: string }> {
    const { id } = arrival;
    const deadline = performance.now() + CONFIRM_TIMEOUT_MS;
    let status = await arrival.guest.status();
    while (status !== 'running' && performance.now() < deadline) {
      await sleep(STATUS_POLL_MS);
      status = await arrival.guest.status();
    }
    if (status !== 'running') {
      await this.abort(id, `the guest is ${status} after the migration`);
      throw new AgentError(502, `workload ${arrival.name} is ${status} here after the migration`);
    }
    clearTimeout(arrival.timer);
    this.arrivals.delete(id);
    arrival.lease?.destroy();
    const { name, definition, guest, origin, peer, artifactsFetched } = arrival;
    this.deps.manager.adopt(name, definition, guest, origin, 'migrated in', { peer, migration: id, ...stats, artifactsFetched });
    this.confirmed.set(id, { peer, status });
    for (const oldest of this.confirmed.keys()) {
      if (this.confirmed.size <= REMEMBERED_CONFIRMATIONS) break;
      this.confirmed.delete(oldest);
    }
    return { status };
  }

  /**
   * The source `peer` gives up migration `id`. One already confirmed is not given up: its guest
   * is a workload here, and the answer (409) tells the source that it moved.
   */
  async abortFor(peer: string, id: string): Promise<void> {
    if (this.confirmed.get(id)?.peer === peer) throw new AgentError(409, `migration ${id} was confirmed: the workload runs here`);
    const arrival = this.arrivals.get(id);
    if (arrival?.confirming) {
      // Too late to give it up: the guest is this agent's once it runs, as the source will hear again.
      await arrival.confirming.catch(() => undefined);
      return this.abortFor(peer, id);
    }
    if (arrival?.peer === peer) await this.abort(id, `${peer} aborted it`);
  }

  /** Gives up an incoming migration: its guest goes, nothing of it stays. */
  async abort(id: string, reason: string): Promise<void> {
    const arrival = this.arrivals.get(id);
    if (!arrival) return;
    this.arrivals.delete(id);
    clearTimeout(arrival.timer);
    this.deps.log.warn({ workload: arrival.name, peer: arrival.peer, reason }, 'incoming migration abandoned');
    arrival.lease?.destroy();
    await arrival.guest.quit().catch(() => undefined);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.arrivals.keys()].map((id) => this.abort(id, 'agent stopping')));
  }
}
