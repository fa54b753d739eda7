/**
 * The target's side of a live migration: a peer's offer is accepted once the image can run here
 * and its artifacts, fetched from the peer when missing, match their digests; a guest then waits
 * for the stream that comes through the peer's tunnel, and becomes a workload of this agent only
 * when the peer confirms and the guest runs. Whatever fails on the way, nothing of it stays.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import * as v from 'valibot';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import { workloadDefinition, type WorkloadDefinition } from './config.js';
import { checkRunnable, imageManifest } from './image.js';
import type { WorkloadManager } from './manager.js';
import type { Acceptance } from './migrate-out.js';
import type { PeerClient, PeerConfig } from './peers.js';
import type { Guest } from './runtime.js';
import { splice } from './splice.js';

const CONFIRM_TIMEOUT_MS = 15_000;
/** An accepted migration whose stream never comes is given up. */
const INCOMING_TIMEOUT_MS = 60_000;
const STATUS_POLL_MS = 20;

/** A peer's offer: the workload as it is defined there, and the image it runs. */
export const migrationOffer = v.object({ definition: workloadDefinition, manifest: imageManifest });
export type MigrationOffer = v.InferOutput<typeof migrationOffer>;

/** The source's word that its side completed, with what it measured. */
export const migrationConfirmation = v.object({ downtimeMs: v.optional(v.number()), totalTimeMs: v.optional(v.number()) });
export type MigrationConfirmation = v.InferOutput<typeof migrationConfirmation>;

interface Arrival {
  id: string;
  name: string;
  peer: string;
  definition: WorkloadDefinition;
  guest: Guest;
  socket: string;
  timer: NodeJS.Timeout;
  artifactsFetched: number;
}

export class IncomingMigrations {
  private readonly arrivals = new Map<string, Arrival>();

  constructor(
    private readonly deps: {
      manager: WorkloadManager;
      client: PeerClient;
      log: Logger;
    },
  ) {}

  /** An offer from `peer`: fetch what is missing, verify, start a guest waiting for the stream. */
  async accept(peer: PeerConfig, { definition, manifest }: MigrationOffer): Promise<Acceptance> {
    const { manager, log } = this.deps;
    const refusal = checkRunnable(manifest);
    if (refusal) throw new AgentError(422, `workload ${definition.name}: ${refusal}`);
    if (manager.guest(definition.name) || [...this.arrivals.values()].some((a) => a.name === definition.name)) {
      throw new AgentError(409, `workload ${definition.name} already runs here`);
    }
    const artifactsFetched = await this.fetchArtifacts(peer, manifest.artifacts);
    manager.addImage(manifest);
    const id = randomUUID();
    const socket = manager.runPath(`${definition.name}.in.sock`);
    rmSync(socket, { force: true });
    const guest = await manager.receive(definition, `unix:${socket}`);
    const timer = setTimeout(() => void this.abort(id, 'no migration stream arrived in time'), INCOMING_TIMEOUT_MS);
    const arrival: Arrival = { id, name: definition.name, peer: peer.name, definition, guest, socket, timer, artifactsFetched };
    this.arrivals.set(id, arrival);
    // The guest ends by itself when an incoming migration fails (the source vanished, the stream broke).
    void guest.exited.then(() => {
      if (this.arrivals.get(id) === arrival) void this.abort(id, 'the guest ended during the incoming migration');
    });
    log.info({ workload: definition.name, peer: peer.name, id, artifactsFetched }, 'incoming migration accepted');
    return { id, artifactsFetched };
  }

  /** Fetches from `peer` the artifacts the store lacks, each verified against its digest; says how many it fetched. */
  private async fetchArtifacts(peer: PeerConfig, artifacts: MigrationOffer['manifest']['artifacts']): Promise<number> {
    const { manager, client, log } = this.deps;
    let fetched = 0;
    for (const artifact of artifacts) {
      if (manager.hasArtifact(artifact.sha256)) continue;
      const stream = await client.download(peer, `/v1/artifacts/${artifact.sha256}`, (bytes, total) => {
        if (bytes === total) log.info({ artifact: artifact.file, bytes }, 'artifact fetched');
      });
      try {
        await manager.storeArtifact(stream, artifact.sha256);
      } catch (error) {
        throw new AgentError(422, `artifact ${artifact.role} (${artifact.file}) from ${peer.name} refused: ${(error as Error).message}`);
      }
      fetched++;
    }
    return fetched;
  }

  /** The tunnel from the source: its bytes go to the waiting guest. */
  stream(id: string, socket: Duplex): void {
    const arrival = this.arrivals.get(id);
    if (!arrival) {
      socket.destroy();
      return;
    }
    void splice(socket, connect(arrival.socket)).then((error) => {
      if (error) this.deps.log.warn({ workload: arrival.name, err: error.message }, 'incoming migration stream broke');
    });
  }

  /** The source says its side completed: wait until the guest runs here, then it is ours. */
  async confirm(id: string, stats: MigrationConfirmation): Promise<{ status: string }> {
    const arrival = this.arrivals.get(id);
    if (!arrival) throw new AgentError(404, `no incoming migration ${id}`);
    const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
    let status = await arrival.guest.status();
    while (status !== 'running' && Date.now() < deadline) {
      await sleep(STATUS_POLL_MS);
      status = await arrival.guest.status();
    }
    if (status !== 'running') {
      await this.abort(id, `the guest is ${status} after the migration`);
      throw new AgentError(502, `workload ${arrival.name} is ${status} here after the migration`);
    }
    clearTimeout(arrival.timer);
    this.arrivals.delete(id);
    rmSync(arrival.socket, { force: true });
    // A workload of ours coming back from where it went is ours again; any other came from the peer.
    const { manager } = this.deps;
    const record = manager.record(arrival.name);
    const origin = record?.state === 'migrated' && record.movedTo === arrival.peer ? record.origin : `peer:${arrival.peer}`;
    manager.adopt(arrival.name, arrival.definition, arrival.guest, origin, 'migrated in', { peer: arrival.peer, ...stats, artifactsFetched: arrival.artifactsFetched });
    return { status };
  }

  /** Gives up an incoming migration: its guest goes, nothing of it stays. */
  async abort(id: string, reason: string): Promise<void> {
    const arrival = this.arrivals.get(id);
    if (!arrival) return;
    this.arrivals.delete(id);
    clearTimeout(arrival.timer);
    this.deps.log.warn({ workload: arrival.name, peer: arrival.peer, reason }, 'incoming migration abandoned');
    await arrival.guest.quit().catch(() => undefined);
    rmSync(arrival.socket, { force: true });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.arrivals.keys()].map((id) => this.abort(id, 'agent stopping')));
  }
}
