/**
 * Live migration of a workload between two agents over their mutual-TLS peer channel. The
 * source offers the workload (definition and image manifest); the target fetches the artifacts
 * it lacks from the source, verifies them, starts QEMU waiting for the incoming migration and
 * accepts; QEMU's migration stream then runs through a tunnel in the same channel; the target
 * confirms the guest runs and the source ends its copy. Any failure on the way leaves the
 * workload running at the source and nothing at the target.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import * as v from 'valibot';
import type { Logger } from '../log.js';
import { parseOrThrow } from '../schema.js';
import { workloadDefinition, type WorkloadDefinition } from './config.js';
import { checkRunnable, parseImageManifest } from './image.js';
import { WorkloadError, type WorkloadManager } from './manager.js';
import { PeerError, type PeerClient, type PeerConfig } from './peers.js';
import { QemuProcess, type MigrationInfo } from './qemu.js';
import { splice } from './splice.js';
import type { ImageManifest } from './types.js';

/** Generous: under TCG a 128 MiB guest takes a second or two; a busy gateway more. */
const MIGRATION_TIMEOUT_MS = 120_000;
const CONFIRM_TIMEOUT_MS = 15_000;
/** An accepted migration whose stream never comes is given up. */
const INCOMING_TIMEOUT_MS = 60_000;

export interface MigrationResult {
  workload: string;
  peer: string;
  status: string;
  downtimeMs?: number;
  totalTimeMs?: number;
  transferredBytes?: number;
  artifactsFetched: number;
}

interface Offer {
  definition: WorkloadDefinition;
  manifest: ImageManifest;
}

interface Incoming {
  id: string;
  name: string;
  peer: string;
  definition: WorkloadDefinition;
  process: QemuProcess;
  socket: string;
  timer: NodeJS.Timeout;
  artifactsFetched: number;
}

function parseOffer(body: unknown): Offer {
  const { definition, manifest } = parseOrThrow(v.object({ definition: workloadDefinition, manifest: v.unknown() }), body, 'migration offer');
  return { definition, manifest: parseImageManifest(manifest, 'migration offer') };
}

export class Migrations {
  private readonly incoming = new Map<string, Incoming>();
  /** Workloads being migrated out, so that a second request waits for nothing. */
  private readonly outgoing = new Set<string>();

  constructor(
    private readonly manager: WorkloadManager,
    private readonly client: PeerClient,
    private readonly peers: PeerConfig[],
    private readonly bandwidthMiBps: number | undefined,
    private readonly log: Logger,
  ) {}

  peer(name: string): PeerConfig {
    const peer = this.peers.find((p) => p.name === name);
    if (!peer) throw new WorkloadError(404, `no peer ${name} (configured: ${this.peers.map((p) => p.name).join(', ') || 'none'})`);
    return peer;
  }

  // ---- source side ----

  /** Moves the running workload `name` to `peerName`; on any failure it keeps running here. */
  async migrateOut(name: string, peerName: string, onProgress?: (info: MigrationInfo) => void): Promise<MigrationResult> {
    const peer = this.peer(peerName);
    const process = this.manager.process(name);
    if (!process) throw new WorkloadError(409, `workload ${name} is not running here`);
    if (this.outgoing.has(name)) throw new WorkloadError(409, `workload ${name} is already being migrated`);
    this.outgoing.add(name);
    const definition = this.manager.definition(name);
    const { manifest } = this.manager.image(definition);
    const started = performance.now();
    this.manager.record(name, 'migration offered', { peer: peerName });
    let accepted: { id: string; artifactsFetched: number } | undefined;
    let local: Server | undefined;
    const socket = join(this.manager.runDir, `${name}.out.sock`);
    try {
      accepted = await this.client.request<{ id: string; artifactsFetched: number }>(peer, 'POST', '/v1/migrations', { definition, manifest }, MIGRATION_TIMEOUT_MS);
      const tunnel = await this.client.stream(peer, `/v1/migrations/${accepted.id}/stream`);
      local = await tunnelFrom(socket, tunnel);
      if (this.bandwidthMiBps !== undefined) await process.qmp.execute('migrate-set-parameters', { 'max-bandwidth': Math.round(this.bandwidthMiBps * 1024 * 1024) });
      await process.migrate(`unix:${socket}`);
      const info = await process.waitMigration(MIGRATION_TIMEOUT_MS, onProgress);
      if (info.status !== 'completed') throw new WorkloadError(502, `migration of ${name} to ${peerName} ${info.status}${info.error ? `: ${info.error}` : ''}`);
      const confirmed = await this.client.request<{ status: string }>(peer, 'POST', `/v1/migrations/${accepted.id}/confirm`, { downtimeMs: info.downtimeMs, totalTimeMs: info.totalTimeMs }, CONFIRM_TIMEOUT_MS);
      const result: MigrationResult = {
        workload: name,
        peer: peerName,
        status: confirmed.status,
        downtimeMs: info.downtimeMs,
        totalTimeMs: info.totalTimeMs,
        transferredBytes: info.transferredBytes,
        artifactsFetched: accepted.artifactsFetched,
      };
      await this.manager.stop(name, 'migrated', { ...result, wallMs: Math.round(performance.now() - started) }, peerName);
      this.log.info(result, 'workload migrated out');
      return result;
    } catch (error) {
      // The guest keeps running here: a failed precopy migration leaves the source VM as it was.
      if (accepted) await this.client.request(peer, 'POST', `/v1/migrations/${accepted.id}/abort`, {}, 5000).catch(() => undefined);
      if ((await process.status().catch(() => 'gone')) === 'paused') await process.resume().catch(() => undefined);
      const message = error instanceof PeerError || error instanceof WorkloadError ? error.message : `migration of ${name} to ${peerName} failed: ${(error as Error).message}`;
      this.manager.record(name, 'migration failed', { peer: peerName, error: message });
      this.log.warn({ workload: name, peer: peerName, err: message }, 'migration failed; the workload keeps running here');
      if (error instanceof WorkloadError) throw error;
      // The target's refusal (422 for a bad artifact or image, 409 for a name it runs) is the answer.
      throw new WorkloadError(error instanceof PeerError && error.status !== undefined && error.status < 500 ? error.status : 502, message);
    } finally {
      this.outgoing.delete(name);
      local?.close();
      rmSync(socket, { force: true });
    }
  }

  // ---- target side ----

  /** An offer from `peer`: fetch what is missing, verify, start QEMU waiting for the stream. */
  async accept(peer: PeerConfig, body: unknown): Promise<{ id: string; artifactsFetched: number }> {
    let offer: Offer;
    try {
      offer = parseOffer(body);
    } catch (error) {
      throw new WorkloadError(400, (error as Error).message);
    }
    const { definition, manifest } = offer;
    const refusal = checkRunnable(manifest);
    if (refusal) throw new WorkloadError(422, `workload ${definition.name}: ${refusal}`);
    if (this.manager.process(definition.name) || [...this.incoming.values()].some((i) => i.name === definition.name)) {
      throw new WorkloadError(409, `workload ${definition.name} already runs here`);
    }
    let artifactsFetched = 0;
    for (const artifact of manifest.artifacts) {
      if (this.manager.imageStore.has(artifact.sha256)) continue;
      const stream = await this.client.download(peer, `/v1/artifacts/${artifact.sha256}`, (bytes, total) => {
        if (bytes === total) this.log.info({ artifact: artifact.file, bytes }, 'artifact fetched');
      });
      try {
        await this.manager.imageStore.add(stream, artifact.sha256);
      } catch (error) {
        throw new WorkloadError(422, `artifact ${artifact.role} (${artifact.file}) from ${peer.name} refused: ${(error as Error).message}`);
      }
      artifactsFetched++;
    }
    this.manager.addImage(manifest);
    const id = randomUUID();
    const qemu = await this.manager.qemuOptions(definition, { incoming: 'defer' });
    const process = await QemuProcess.start(qemu, this.log.child({ workload: definition.name, migration: id }));
    const socket = join(this.manager.runDir, `${definition.name}.in.sock`);
    rmSync(socket, { force: true });
    try {
      await process.migrateIncoming(`unix:${socket}`);
    } catch (error) {
      await process.quit().catch(() => undefined);
      throw error;
    }
    const timer = setTimeout(() => void this.abort(id, 'no migration stream arrived in time'), INCOMING_TIMEOUT_MS);
    const incoming: Incoming = { id, name: definition.name, peer: peer.name, definition, process, socket, timer, artifactsFetched };
    this.incoming.set(id, incoming);
    // QEMU ends itself when an incoming migration fails (the source vanished, the stream broke).
    process.once('exit', () => {
      if (this.incoming.get(id) === incoming) void this.abort(id, 'QEMU ended during the incoming migration');
    });
    this.log.info({ workload: definition.name, peer: peer.name, id, artifactsFetched }, 'incoming migration accepted');
    return { id, artifactsFetched };
  }

  /** The tunnel from the source: its bytes go to the waiting QEMU. */
  stream(id: string, socket: Duplex): void {
    const incoming = this.incoming.get(id);
    if (!incoming) {
      socket.destroy();
      return;
    }
    void splice(socket, connect(incoming.socket)).then((error) => {
      if (error) this.log.warn({ workload: incoming.name, err: error.message }, 'incoming migration stream broke');
    });
  }

  /** The source says its side completed: wait until the guest runs here, then it is ours. */
  async confirm(id: string, body: unknown): Promise<{ status: string }> {
    const incoming = this.incoming.get(id);
    if (!incoming) throw new WorkloadError(404, `no incoming migration ${id}`);
    const stats = parseOrThrow(v.object({ downtimeMs: v.optional(v.number()), totalTimeMs: v.optional(v.number()) }), body, 'migration confirmation');
    const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
    let status = await incoming.process.status();
    while (status !== 'running' && Date.now() < deadline) {
      await sleep(20);
      status = await incoming.process.status();
    }
    if (status !== 'running') {
      await this.abort(id, `the guest is ${status} after the migration`);
      throw new WorkloadError(502, `workload ${incoming.name} is ${status} here after the migration`);
    }
    clearTimeout(incoming.timer);
    this.incoming.delete(id);
    rmSync(incoming.socket, { force: true });
    // A workload of ours coming back from where it went is ours again; any other came from the peer.
    const record = this.manager.store.get(incoming.name);
    const origin = record?.state === 'migrated' && record.movedTo === incoming.peer ? record.origin : `peer:${incoming.peer}`;
    this.manager.adopt(incoming.name, incoming.definition, incoming.process, origin, 'migrated in', { peer: incoming.peer, ...stats, artifactsFetched: incoming.artifactsFetched });
    return { status };
  }

  /** Gives up an incoming migration: its QEMU goes, nothing of it stays. */
  async abort(id: string, reason: string): Promise<void> {
    const incoming = this.incoming.get(id);
    if (!incoming) return;
    this.incoming.delete(id);
    clearTimeout(incoming.timer);
    this.log.warn({ workload: incoming.name, peer: incoming.peer, reason }, 'incoming migration abandoned');
    await incoming.process.quit().catch(() => undefined);
    rmSync(incoming.socket, { force: true });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.incoming.keys()].map((id) => this.abort(id, 'agent stopping')));
  }
}

/** A unix socket QEMU migrates into, whose bytes go through `tunnel` (and back: QEMU's return path). */
function tunnelFrom(path: string, tunnel: Duplex): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    server.close();
    // A broken stream shows as QEMU's migration failing; nothing more to report here.
    void splice(socket, tunnel);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}
