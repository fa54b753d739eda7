/**
 * The workloads of this gateway: images verified into a content-addressed store, guests started
 * from them by the runtime with the caps their definition sets, restarted by their restart
 * policy, and their state and history in SQLite. Migration and on-demand start build on the
 * methods here; what the manager keeps stays inside it.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import type { WorkloadDefinition, WorkloadsConfig } from './config.js';
import { parseWith } from '../schema.js';
import { checkRunnable, imageManifest, ImageStore } from './image.js';
import { peerScoped, scopeOf } from './peer-scope.js';
import type { Guest, GuestSpec, IncomingGuest, Runtime, StreamListen } from './runtime.js';
import { WorkloadStore, type HistoryEvent, type WorkloadRecord, type WorkloadState } from './store.js';
import type { ArtifactPaths, GuestNetwork, ImageArtifact, ImageManifest } from './types.js';

const MAX_RESTART_DELAY_MS = 60_000;
const CONSOLE_TAIL_BYTES = 4096;

export interface Image {
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
}

/** A workload as the API shows it: its record, and while its guest runs here, the guest's process. */
export interface WorkloadView extends WorkloadRecord {
  pid?: number;
  accel?: string;
}

/** A defined workload that has no record yet. */
function neverRun(definition: WorkloadDefinition): WorkloadRecord {
  return { name: definition.name, definition, state: 'stopped', origin: 'local', updatedAt: '' };
}

interface Running {
  guest: Guest;
  /** Set while the agent itself ends the guest: not a failure to restart. */
  stopping: boolean;
}

export interface ManagerDeps {
  config: WorkloadsConfig;
  dataDir: string;
  /** The runtime's own directory: sockets, consoles, snapshots. */
  runDir: string;
  runtime: Runtime;
  log: Logger;
}

/** The LAN needs two yeses: the image asks for it, and this agent's config allows it for the workload. */
function networkOf(definition: WorkloadDefinition, manifest: ImageManifest): GuestNetwork {
  return definition.network === 'lan' && manifest.network === 'lan' ? 'lan' : 'restricted';
}

export class WorkloadManager {
  /** This agent's own images, by name. */
  private readonly images = new Map<string, Image>();
  /** Images that came with peers' workloads, by `<peer>.<name>`: never taken for one of this agent's, whatever they are called. */
  private readonly peerImages = new Map<string, Image>();
  private readonly store: WorkloadStore;
  private readonly imageStore: ImageStore;
  private readonly running = new Map<string, Running>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  /** Restarts in a row by the restart policy, for its backoff. */
  private readonly restarts = new Map<string, number>();
  private readonly config: WorkloadsConfig;
  private readonly runDir: string;
  private readonly runtime: Runtime;
  private readonly log: Logger;

  /** Opens the workloads' database and image store (built within the module's start). */
  constructor({ config, dataDir, runDir, runtime, log }: ManagerDeps) {
    this.config = config;
    this.runDir = runDir;
    this.runtime = runtime;
    this.log = log;
    this.imageStore = new ImageStore(join(dataDir, 'workloads', 'images'));
    this.store = new WorkloadStore(join(dataDir, 'workloads.db'), config.historySize);
  }

  /** Verifies and stores the built images, then starts the workloads marked autostart, and those that ran before a restart. */
  async start(): Promise<void> {
    await this.runtime.reclaim();
    for (const dir of this.config.images) await this.importImages(dir);
    this.loadPeerImages();
    const toStart = new Set(this.config.workloads.filter((w) => w.autostart && !w.onDemand).map((w) => w.name));
    for (const record of this.store.list()) {
      if (record.state === 'running' || record.state === 'starting') toStart.add(record.name);
      // A migration in progress when the agent stopped did not finish: nothing of it runs now.
      if (record.state === 'incoming') this.store.remove(record.name);
    }
    for (const name of toStart) await this.run(name).catch((error: Error) => this.log.error({ workload: name, err: error.message }, 'workload not started'));
  }

  private async importImages(dir: string): Promise<void> {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = join(dir, entry.name, 'manifest.json');
      if (!entry.isDirectory() || !existsSync(file)) continue;
      try {
        const { manifest, artifacts } = await this.imageStore.importImage(file);
        this.images.set(manifest.name, { manifest, artifacts });
        this.log.info({ image: manifest.name, version: manifest.version }, 'image verified');
      } catch (error) {
        this.log.error({ manifest: file, err: (error as Error).message }, 'image refused');
      }
    }
  }

  /** Adds the image of `peer`'s workloads whose artifacts are already in the store (its migration brought them); kept across restarts. */
  addPeerImage(peer: string, manifest: ImageManifest): void {
    const artifacts = this.imageStore.artifactsOf(manifest);
    if (!artifacts) throw new AgentError(409, `image ${manifest.name} of ${peer}: artifacts missing from the store`);
    const name = peerScoped(peer, manifest.name);
    this.peerImages.set(name, { manifest, artifacts });
    this.store.savePeerImage(name, manifest);
  }

  /** The peers' images kept from before: a peer's workload that ran here runs again after a restart. */
  private loadPeerImages(): void {
    for (const { name, manifest: stored } of this.store.peerImages()) {
      const parsed = parseWith(imageManifest, stored);
      const artifacts = parsed.ok ? this.imageStore.artifactsOf(parsed.value) : undefined;
      if (!parsed.ok || !artifacts) {
        this.log.warn({ image: name, reason: parsed.ok ? 'artifacts missing from the store' : parsed.issues[0]?.message }, 'peer image dropped');
        this.store.removePeerImage(name);
        continue;
      }
      this.peerImages.set(name, { manifest: parsed.value, artifacts });
    }
  }

  hasArtifact(sha256: string): boolean {
    return this.imageStore.has(sha256);
  }

  /** Stores what `stream` holds if it is `artifact` (its size, then its digest); otherwise an ImageError, and nothing stays. */
  async storeArtifact(stream: NodeJS.ReadableStream, artifact: Pick<ImageArtifact, 'sha256' | 'size'>): Promise<void> {
    await this.imageStore.add(stream, artifact);
  }

  /** The stored file of an artifact one of this agent's images lists, and its size; nothing for any other digest. */
  artifact(sha256: string): { path: string; size: number } | undefined {
    for (const { manifest } of this.images.values()) {
      const artifact = manifest.artifacts.find((a) => a.sha256 === sha256);
      if (artifact && this.imageStore.has(sha256)) return { path: this.imageStore.path(sha256), size: artifact.size };
    }
    return undefined;
  }

  /** The config's definition of one of this agent's workloads; the stored one of a peer's (or of one no longer in the config). */
  definition(name: string): WorkloadDefinition {
    const definition = this.config.workloads.find((w) => w.name === name) ?? this.store.get(name)?.definition;
    if (!definition) throw new AgentError(404, `no workload ${name} (defined: ${this.config.workloads.map((w) => w.name).join(', ') || 'none'})`);
    return definition;
  }

  /** The image a workload runs: one of this agent's for its own workloads, the peer's for a peer's. */
  image(definition: WorkloadDefinition): Image {
    const { peer } = scopeOf(definition.name);
    const image = peer ? this.peerImages.get(peerScoped(peer, definition.image)) : this.images.get(definition.image);
    if (!image && peer) throw new AgentError(409, `workload ${definition.name}: no image ${definition.image} from ${peer} here`);
    if (!image) throw new AgentError(409, `workload ${definition.name}: no image ${definition.image} here (have: ${[...this.images.keys()].join(', ') || 'none'})`);
    const refusal = checkRunnable(image.manifest);
    if (refusal) throw new AgentError(422, `workload ${definition.name}: ${refusal}`);
    return image;
  }

  list(): WorkloadView[] {
    const records = new Map(this.store.list().map((r) => [r.name, r]));
    for (const definition of this.config.workloads) if (!records.has(definition.name)) records.set(definition.name, neverRun(definition));
    return [...records.values()].map((record) => this.view(record));
  }

  get(name: string): WorkloadView {
    return this.view(this.store.get(name) ?? neverRun(this.definition(name)));
  }

  /** What is stored of the workload (none for one defined but never run). */
  record(name: string): WorkloadRecord | undefined {
    return this.store.get(name);
  }

  history(name: string): HistoryEvent[] {
    return this.store.history(name);
  }

  /** Who moved the workload away, as its last `migrated` event says. */
  movedBy(name: string): string | undefined {
    const by = this.store.history(name).find((h) => h.event === 'migrated')?.detail?.by;
    return typeof by === 'string' ? by : undefined;
  }

  private view(record: WorkloadRecord): WorkloadView {
    const running = this.running.get(record.name);
    return { ...record, ...(running ? { pid: running.guest.pid, accel: running.guest.accel } : {}) };
  }

  /** The workload's guest, while it runs here. */
  guest(name: string): Guest | undefined {
    return this.running.get(name)?.guest;
  }

  /** A file of the runtime's, in its run directory: a migration's socket, a snapshot. */
  runPath(file: string): string {
    return join(this.runDir, file);
  }

  private spec(definition: WorkloadDefinition, hostPorts = definition.ports): GuestSpec {
    const { manifest, artifacts } = this.image(definition);
    const { memoryMiB, cpus, cpuQuotaPercent } = definition;
    return { name: definition.name, manifest, artifacts, memoryMiB, cpus, cpuQuotaPercent, hostPorts, network: networkOf(definition, manifest) };
  }

  /** Starts the workload (a cold boot, or from `snapshot`); resolves once its guest runs. */
  async run(name: string, options: { snapshot?: string; hostPorts?: GuestSpec['hostPorts']; restart?: boolean } = {}): Promise<WorkloadView> {
    if (this.running.has(name)) return this.get(name);
    if (!options.restart) this.restarts.delete(name);
    const definition = this.definition(name);
    const record = this.store.get(name);
    if (record?.state === 'migrated') throw new AgentError(409, `workload ${name} runs on ${record.movedTo}: bring it back instead`);
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const spec = this.spec(definition, options.hostPorts);
    const origin = record?.origin ?? 'local';
    this.store.save({ name, definition, state: 'starting', origin }, options.snapshot ? 'resuming' : 'starting');
    let guest: Guest;
    try {
      guest = await this.runtime.start(spec, options.snapshot);
    } catch (error) {
      this.store.save({ name, definition, state: 'failed', origin, reason: (error as Error).message }, 'start failed');
      throw new AgentError(500, `workload ${name} did not start: ${(error as Error).message}`);
    }
    this.adopt(name, definition, guest, origin, 'started', { pid: guest.pid, accel: guest.accel, network: spec.network, snapshot: options.snapshot });
    return this.get(name);
  }

  /** Starts the workload's guest waiting for a migration stream (runtime.ts `incoming`); it is adopted once the migration is confirmed. */
  receive(definition: WorkloadDefinition, listen: StreamListen): Promise<IncomingGuest> {
    return this.runtime.incoming(this.spec(definition), listen);
  }

  /** Takes over a running guest (one this agent started, or one a migration brought in). */
  adopt(name: string, definition: WorkloadDefinition, guest: Guest, origin: string, event: string, detail?: Record<string, unknown>): void {
    const running: Running = { guest, stopping: false };
    this.running.set(name, running);
    void guest.exited.then(({ code, signal }) => this.exited(name, definition, running, code, signal));
    this.store.save({ name, definition, state: 'running', origin }, event, detail);
    this.log.info({ workload: name, pid: guest.pid, origin }, event === 'started' ? 'workload started' : `workload ${event}`);
  }

  private exited(name: string, definition: WorkloadDefinition, running: Running, code: number | null, signal: string | null): void {
    if (this.running.get(name) !== running) return;
    this.running.delete(name);
    if (running.stopping) return;
    const failed = code !== 0;
    const reason = `QEMU exited (${signal ?? code})`;
    const record = this.store.get(name);
    this.store.save({ name, definition, state: failed ? 'failed' : 'stopped', origin: record?.origin ?? 'local', reason }, 'exited', { code, signal });
    const restart = definition.restart === 'always' || (definition.restart === 'on-failure' && failed);
    if (!restart) return;
    const restarts = this.restarts.get(name) ?? 0;
    this.restarts.set(name, restarts + 1);
    const delay = Math.min(1000 * 2 ** restarts, MAX_RESTART_DELAY_MS);
    this.log.warn({ workload: name, reason, retryMs: delay }, 'workload ended; restarting');
    this.restartTimers.set(
      name,
      setTimeout(() => {
        this.restartTimers.delete(name);
        void this.run(name, { restart: true }).catch((error: Error) => this.log.error({ workload: name, err: error.message }, 'workload restart failed'));
      }, delay),
    );
  }

  /** Ends the workload's guest; `state` says why (stopped by an operator, idle, migrated away). */
  async stop(name: string, state: WorkloadState = 'stopped', detail?: Record<string, unknown>, movedTo?: string): Promise<WorkloadView> {
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const running = this.running.get(name);
    const record = this.store.get(name);
    if (!running && !record) this.definition(name);
    if (running) {
      running.stopping = true;
      await running.guest.quit();
      this.running.delete(name);
    }
    const definition = record?.definition ?? this.definition(name);
    this.store.save({ name, definition, state, origin: record?.origin ?? 'local', ...(movedTo ? { movedTo } : {}) }, state, detail);
    return this.get(name);
  }

  /** Pauses the guest (its vCPUs stop; memory and devices stay) or lets it run again. */
  async pause(name: string, paused: boolean): Promise<WorkloadView> {
    const running = this.running.get(name);
    if (!running) throw new AgentError(409, `workload ${name} is not running here`);
    if (paused) await running.guest.pause();
    else await running.guest.resume();
    const record = this.store.get(name)!;
    this.store.save({ ...record, state: paused ? 'paused' : 'running' }, paused ? 'paused' : 'resumed');
    return this.get(name);
  }

  /** Forgets a workload that is not running (one that came in by migration and was stopped); a peer's image goes with the last of its workloads here. */
  remove(name: string): void {
    if (this.running.has(name)) throw new AgentError(409, `workload ${name} is running`);
    const definition = this.store.get(name)?.definition;
    this.store.remove(name);
    const { peer } = scopeOf(name);
    if (!peer || !definition) return;
    const image = peerScoped(peer, definition.image);
    if (this.store.list().some((r) => scopeOf(r.name).peer === peer && r.definition.image === definition.image)) return;
    this.peerImages.delete(image);
    this.store.removePeerImage(image);
  }

  /** Appends `event` to the workload's history, with `change` to its record; nothing for a workload never run. */
  note(name: string, event: string, detail?: Record<string, unknown>, change: Partial<WorkloadRecord> = {}): void {
    const record = this.store.get(name);
    if (!record) return;
    this.store.save({ ...record, ...change }, event, detail);
  }

  consoleTail(name: string): string {
    return this.runtime.consoleTail(name, CONSOLE_TAIL_BYTES);
  }

  /** Ends every guest and closes the database; the records stay `running`, so the agent starts them again when it comes back. */
  async stopAll(): Promise<void> {
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    await Promise.all(
      [...this.running.entries()].map(async ([name, running]) => {
        running.stopping = true;
        await running.guest.quit().catch(() => undefined);
        this.running.delete(name);
        this.log.info({ workload: name }, 'workload stopped with the agent');
      }),
    );
    this.store.close();
  }
}
