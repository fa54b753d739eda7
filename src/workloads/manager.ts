/**
 * The workloads of this gateway: images verified into a content-addressed store, QEMU processes
 * started from them with the caps their definition sets, restarted by their restart policy, and
 * their state and history in SQLite. Migration and on-demand start build on run/stop here.
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { detectAccel } from './accel.js';
import type { WorkloadDefinition, WorkloadsConfig } from './config.js';
import { checkRunnable, ImageStore } from './image.js';
import { consoleTail, QemuProcess, type QemuOptions } from './qemu.js';
import { WorkloadStore, type WorkloadRecord, type WorkloadState } from './store.js';
import type { ArtifactPaths, ImageManifest } from './types.js';

const MAX_RESTART_DELAY_MS = 60_000;

export class WorkloadError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Image {
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
}

export interface WorkloadView extends WorkloadRecord {
  pid?: number;
  accel?: string;
}

/** A defined workload that has no record yet. */
function neverRun(definition: WorkloadDefinition): WorkloadRecord {
  return { name: definition.name, definition, state: 'stopped', origin: 'local', updatedAt: '' };
}

interface Running {
  process: QemuProcess;
  /** Set while the agent itself ends the process: not a failure to restart. */
  stopping: boolean;
}

interface ManagerEvents {
  changed: [WorkloadRecord];
}

export class WorkloadManager extends EventEmitter<ManagerEvents> {
  readonly images = new Map<string, Image>();
  readonly store: WorkloadStore;
  readonly imageStore: ImageStore;
  private readonly running = new Map<string, Running>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  /** Restarts in a row by the restart policy, for its backoff. */
  private readonly restarts = new Map<string, number>();
  private accel?: 'kvm' | 'tcg';
  readonly runDir: string;

  constructor(
    readonly config: WorkloadsConfig,
    dataDir: string,
    runDir: string,
    private readonly log: Logger,
  ) {
    super();
    this.store = new WorkloadStore(join(dataDir, 'workloads.db'));
    this.imageStore = new ImageStore(join(dataDir, 'workloads', 'images'));
    this.runDir = join(runDir, 'workloads');
    mkdirSync(this.runDir, { recursive: true });
  }

  /** Verifies and stores the built images, then starts the workloads marked autostart, and those that ran before a restart. */
  async start(): Promise<void> {
    this.endLeftovers();
    for (const dir of this.config.images) await this.importImages(dir);
    const toStart = new Set(this.config.workloads.filter((w) => w.autostart && !w.onDemand).map((w) => w.name));
    for (const record of this.store.list()) {
      if (record.state === 'running' || record.state === 'starting') toStart.add(record.name);
      // A migration in progress when the agent stopped did not finish: nothing of it runs now.
      if (record.state === 'incoming') this.store.remove(record.name);
    }
    for (const name of toStart) await this.run(name).catch((error: Error) => this.log.error({ workload: name, err: error.message }, 'workload not started'));
  }

  /**
   * QEMUs an agent that was killed left behind (they outlive it): ended, so that what ran
   * starts again under this agent's control instead of twice.
   */
  private endLeftovers(): void {
    for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
      let commandLine: string;
      try {
        commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      const program = commandLine.split('\0')[0]!.split('/').pop()!;
      if (!program.startsWith('qemu-system') || !commandLine.includes(`${this.runDir}/`)) continue;
      this.log.warn({ pid: Number(pid) }, 'QEMU left by a previous run of the agent ended');
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
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

  /** Adds an image whose artifacts are already in the store (a migration brought them). */
  addImage(manifest: ImageManifest): Image {
    const artifacts = this.imageStore.artifactsOf(manifest);
    if (!artifacts) throw new WorkloadError(409, `image ${manifest.name}: artifacts missing from the store`);
    const image = { manifest, artifacts };
    this.images.set(manifest.name, image);
    return image;
  }

  definition(name: string): WorkloadDefinition {
    const definition = this.store.get(name)?.definition ?? this.config.workloads.find((w) => w.name === name);
    if (!definition) throw new WorkloadError(404, `no workload ${name} (defined: ${this.config.workloads.map((w) => w.name).join(', ') || 'none'})`);
    return definition;
  }

  image(definition: WorkloadDefinition): Image {
    const image = this.images.get(definition.image);
    if (!image) throw new WorkloadError(409, `workload ${definition.name}: no image ${definition.image} here (have: ${[...this.images.keys()].join(', ') || 'none'})`);
    const refusal = checkRunnable(image.manifest);
    if (refusal) throw new WorkloadError(422, `workload ${definition.name}: ${refusal}`);
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

  private view(record: WorkloadRecord): WorkloadView {
    const running = this.running.get(record.name);
    return { ...record, ...(running ? { pid: running.process.pid, accel: this.accel } : {}) };
  }

  process(name: string): QemuProcess | undefined {
    return this.running.get(name)?.process;
  }

  async qemuOptions(definition: WorkloadDefinition, extra: Partial<QemuOptions> = {}): Promise<QemuOptions> {
    const { manifest, artifacts } = this.image(definition);
    this.accel ??= await detectAccel(this.log, manifest.architecture);
    return {
      id: definition.name,
      runDir: this.runDir,
      manifest,
      artifacts,
      accel: this.accel,
      memoryMiB: definition.memoryMiB,
      cpus: definition.cpus,
      cpuQuotaPercent: definition.cpuQuotaPercent,
      hostPorts: definition.ports,
      ...extra,
    };
  }

  /** Starts the workload (a cold boot, or from `snapshot`); resolves once QEMU runs it. */
  async run(name: string, options: { snapshot?: string; definition?: WorkloadDefinition; hostPorts?: QemuOptions['hostPorts']; restart?: boolean } = {}): Promise<WorkloadView> {
    if (this.running.has(name)) return this.get(name);
    if (!options.restart) this.restarts.delete(name);
    const definition = options.definition ?? this.definition(name);
    const record = this.store.get(name);
    if (record?.state === 'migrated') throw new WorkloadError(409, `workload ${name} runs on ${record.movedTo}: bring it back instead`);
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const qemu = await this.qemuOptions(definition, { snapshot: options.snapshot, hostPorts: options.hostPorts ?? definition.ports });
    this.save({ name, definition, state: 'starting', origin: record?.origin ?? 'local' }, options.snapshot ? 'resuming' : 'starting');
    let process: QemuProcess;
    try {
      process = await QemuProcess.start(qemu, this.log.child({ workload: name }));
    } catch (error) {
      this.save({ name, definition, state: 'failed', origin: record?.origin ?? 'local', reason: (error as Error).message }, 'start failed');
      throw new WorkloadError(500, `workload ${name} did not start: ${(error as Error).message}`);
    }
    this.adopt(name, definition, process, record?.origin ?? 'local', 'started', { pid: process.pid, accel: qemu.accel, snapshot: options.snapshot });
    return this.get(name);
  }

  /** Takes over a running QEMU (one this agent started, or one a migration brought in). */
  adopt(name: string, definition: WorkloadDefinition, process: QemuProcess, origin: string, event: string, detail?: Record<string, unknown>): void {
    const running: Running = { process, stopping: false };
    this.running.set(name, running);
    process.once('exit', (code, signal) => this.exited(name, definition, running, code, signal));
    this.save({ name, definition, state: 'running', origin }, event, detail);
    this.log.info({ workload: name, pid: process.pid, origin }, event === 'started' ? 'workload started' : `workload ${event}`);
  }

  private exited(name: string, definition: WorkloadDefinition, running: Running, code: number | null, signal: string | null): void {
    if (this.running.get(name) !== running) return;
    this.running.delete(name);
    if (running.stopping) return;
    const failed = code !== 0;
    const reason = `QEMU exited (${signal ?? code})`;
    const record = this.store.get(name);
    this.save({ name, definition, state: failed ? 'failed' : 'stopped', origin: record?.origin ?? 'local', reason }, 'exited', { code, signal });
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

  /** Ends the workload's QEMU; `state` says why (stopped by an operator, idle, migrated away). */
  async stop(name: string, state: WorkloadState = 'stopped', detail?: Record<string, unknown>, movedTo?: string): Promise<WorkloadView> {
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const running = this.running.get(name);
    const record = this.store.get(name);
    if (!running && !record) this.definition(name);
    if (running) {
      running.stopping = true;
      await running.process.quit();
      this.running.delete(name);
    }
    const definition = record?.definition ?? this.definition(name);
    this.save({ name, definition, state, origin: record?.origin ?? 'local', ...(movedTo ? { movedTo } : {}) }, state, detail);
    return this.get(name);
  }

  /** Pauses the guest (its vCPUs stop; memory and devices stay) or lets it run again. */
  async pause(name: string, paused: boolean): Promise<WorkloadView> {
    const running = this.running.get(name);
    if (!running) throw new WorkloadError(409, `workload ${name} is not running here`);
    if (paused) await running.process.pause();
    else await running.process.resume();
    const record = this.store.get(name)!;
    this.save({ ...record, state: paused ? 'paused' : 'running' }, paused ? 'paused' : 'resumed');
    return this.get(name);
  }

  /** Forgets a workload that is not running (one that came in by migration and was stopped). */
  remove(name: string): void {
    if (this.running.has(name)) throw new WorkloadError(409, `workload ${name} is running`);
    this.store.remove(name);
  }

  record(name: string, event: string, detail?: Record<string, unknown>, change: Partial<WorkloadRecord> = {}): void {
    const record = this.store.get(name);
    if (!record) return;
    this.save({ ...record, ...change }, event, detail);
  }

  consoleTail(name: string, bytes = 4096): string {
    return consoleTail(this.runDir, name, bytes);
  }

  private save(record: Omit<WorkloadRecord, 'updatedAt'>, event: string, detail?: Record<string, unknown>): void {
    const saved = this.store.save(record, event, detail);
    this.emit('changed', saved);
  }

  async stopAll(): Promise<void> {
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    await Promise.all(
      [...this.running.entries()].map(async ([name, running]) => {
        running.stopping = true;
        await running.process.quit().catch(() => undefined);
        this.running.delete(name);
        // Left `running` in the store: the agent starts it again when it comes back.
        this.log.info({ workload: name }, 'workload stopped with the agent');
      }),
    );
    this.store.close();
  }
}
