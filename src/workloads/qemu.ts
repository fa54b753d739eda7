/**
 * One workload's QEMU process, driven through QMP: started from an image's artifacts with its
 * caps, its serial console written to a file, paused, resumed, migrated live, saved to a
 * snapshot file and started again from one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, createWriteStream, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { access, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as v from 'valibot';
import type { Logger } from '../log.js';
import { qemuBinary, type Accel } from './accel.js';
import { QmpClient } from './qmp.js';
import type { ArtifactPaths, ImageManifest } from './types.js';

const QMP_CONNECT_TIMEOUT_MS = 10_000;
const SNAPSHOT_TIMEOUT_MS = 60_000;
const MIGRATION_POLL_MS = 20;
const DEFAULT_QUIT_TIMEOUT_MS = 5000;
const STDERR_TAIL_CHARS = 4000;
/** QEMU's default (32 MiB/s) protects a real link; a snapshot only goes to a local file. */
const SNAPSHOT_BANDWIDTH_BYTES_PER_S = 8 << 30;
/** sun_path is 108 bytes, NUL included. */
const MAX_UNIX_SOCKET_PATH = 107;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface MigrationInfo {
  status: string;
  totalTimeMs?: number;
  downtimeMs?: number;
  setupTimeMs?: number;
  transferredBytes?: number;
  remainingBytes?: number;
  totalBytes?: number;
  error?: string;
}

export interface QemuOptions {
  /** Names the files in runDir (`<id>.qmp`, `<id>.console`). */
  id: string;
  runDir: string;
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
  accel: Accel;
  /** Guest RAM; the manifest's by default. */
  memoryMiB?: number;
  /** Guest vCPUs; the manifest's by default. */
  cpus?: number;
  /** CPU time the whole QEMU process may use, 100 = one host core (a cgroup cpu controller). */
  cpuQuotaPercent?: number;
  /** User-networking port forwards 127.0.0.1:host → guest (linux images). */
  hostPorts?: Array<{ guest: number; host: number }>;
  /** Wait for `migrateIncoming` instead of booting. */
  incoming?: 'defer';
  /** Start from a file written by `saveSnapshot` instead of booting. */
  snapshot?: string;
}

const TERMINAL_MIGRATION_STATUSES = new Set(['completed', 'failed', 'cancelled']);

const StatusSchema = v.object({ status: v.string() });
const MigrateInfoSchema = v.object({
  status: v.optional(v.string()),
  'total-time': v.optional(v.number()),
  downtime: v.optional(v.number()),
  'setup-time': v.optional(v.number()),
  ram: v.optional(v.object({ transferred: v.number(), remaining: v.number(), total: v.number() })),
  'error-desc': v.optional(v.string()),
});
const MigrateParametersSchema = v.object({ 'max-bandwidth': v.number() });

/**
 * QEMU's arguments for these options. The device set depends on nothing but the image and the
 * caps, so that a migration target started with the same options (plus `incoming`) matches
 * its source; host ports are backend configuration and may differ between the two.
 */
export function qemuArgs(options: QemuOptions): string[] {
  checkOptions(options);
  const { manifest, artifacts } = options;
  const args = ['-name', options.id, '-nodefaults', '-no-user-config', '-display', 'none', '-accel', options.accel];
  if (manifest.architecture === 'x86_64') args.push('-machine', 'pc');
  else args.push('-machine', manifest.aarch64?.machine ?? 'virt', '-cpu', options.accel === 'kvm' ? (manifest.aarch64?.cpu ?? 'host') : 'max');
  args.push('-m', String(options.memoryMiB ?? manifest.memoryMiB), '-smp', String(options.cpus ?? manifest.cpus));
  // A guest that resets (a crash, a triple fault) ends QEMU, so the restart policy sees it instead of a silent reboot loop.
  args.push('-no-reboot');
  args.push('-serial', `file:${consolePathOf(options)}`, '-qmp', `unix:${qemuOptionValue(qmpPathOf(options))},server=on,wait=off`);
  args.push('-kernel', artifacts.kernel!);
  if (manifest.kind === 'linux') {
    if (artifacts.initrd) args.push('-initrd', artifacts.initrd);
    if (manifest.cmdline) args.push('-append', manifest.cmdline);
    const forwards = (options.hostPorts ?? []).map(({ host, guest }) => `,hostfwd=tcp:127.0.0.1:${host}-:${guest}`).join('');
    args.push('-netdev', `user,id=n0${forwards}`, '-device', 'virtio-net-pci,netdev=n0');
  }
  // snapshot=on: the image's disk stays as its digest says; the guest writes to a throwaway overlay.
  if (artifacts.disk) args.push('-drive', `file=${qemuOptionValue(artifacts.disk)},if=virtio,format=raw,snapshot=on`);
  if (options.incoming) args.push('-incoming', 'defer');
  // The snapshot file is handed to QEMU already open, as its fd 3 (see QemuProcess.start).
  if (options.snapshot) args.push('-incoming', 'fd:3');
  return args;
}

function checkOptions(options: QemuOptions): void {
  const { manifest, artifacts } = options;
  const problems: string[] = [];
  if (!SAFE_ID.test(options.id)) problems.push(`id ${JSON.stringify(options.id)} must be 1-64 letters, digits, '.', '_' or '-'`);
  if (qmpPathOf(options).length > MAX_UNIX_SOCKET_PATH) problems.push(`runDir ${options.runDir} is too long for a unix socket path`);
  for (const [name, value] of [['memoryMiB', options.memoryMiB ?? manifest.memoryMiB], ['cpus', options.cpus ?? manifest.cpus]] as const) {
    if (!Number.isInteger(value) || value < 1) problems.push(`${name} must be a positive integer, not ${value}`);
  }
  if (options.cpuQuotaPercent !== undefined && !(options.cpuQuotaPercent >= 1)) problems.push(`cpuQuotaPercent must be at least 1, not ${options.cpuQuotaPercent}`);
  if (!artifacts.kernel) problems.push('the image has no kernel artifact');
  if (manifest.kind === 'linux' && !artifacts.initrd && !artifacts.disk) problems.push('a linux image needs an initrd or a disk artifact');
  if (manifest.kind !== 'linux' && options.hostPorts?.length) problems.push(`a ${manifest.kind} image has no network device to forward host ports to`);
  for (const { host, guest } of options.hostPorts ?? []) {
    if (![host, guest].every((port) => Number.isInteger(port) && port >= 1 && port <= 65535)) problems.push(`port forward ${host} → ${guest} is not a pair of TCP ports`);
  }
  if (options.incoming && options.snapshot) problems.push('incoming and snapshot exclude each other');
  if (problems.length > 0) throw new Error(`cannot run ${options.id} (${manifest.name}): ${problems.join('; ')}`);
}

/** QEMU splits `key=value,…` options at commas; a comma inside a value is written twice. */
function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

const consolePathOf = (options: Pick<QemuOptions, 'runDir' | 'id'>) => join(options.runDir, `${options.id}.console`);
const qmpPathOf = (options: QemuOptions) => join(options.runDir, `${options.id}.qmp`);

function migrationInfo(answer: v.InferOutput<typeof MigrateInfoSchema>): MigrationInfo {
  return {
    status: answer.status ?? 'none',
    totalTimeMs: answer['total-time'],
    downtimeMs: answer.downtime,
    setupTimeMs: answer['setup-time'],
    transferredBytes: answer.ram?.transferred,
    remainingBytes: answer.ram?.remaining,
    totalBytes: answer.ram?.total,
    error: answer['error-desc'],
  };
}

export class QemuProcess extends EventEmitter<{ exit: [code: number | null, signal: NodeJS.Signals | null] }> {
  readonly pid: number;
  readonly consolePath: string;
  readonly exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    readonly qmp: QmpClient,
    private readonly options: QemuOptions,
    ended: Promise<Ending>,
  ) {
    super();
    this.pid = child.pid!;
    this.consolePath = consolePathOf(options);
    this.exited = ended.then(({ code }) => code);
    void ended.then(({ code, signal }) => this.emit('exit', code, signal));
  }

  /** Spawns QEMU and resolves once QMP answers (and, from a snapshot, once the guest runs again); on any failure no QEMU is left. */
  static async start(options: QemuOptions, log: Logger): Promise<QemuProcess> {
    const args = qemuArgs(options);
    await checkReadable(options);
    const cpuQuota = options.cpuQuotaPercent === undefined ? undefined : CpuQuota.forHost();
    mkdirSync(options.runDir, { recursive: true });
    rmSync(qmpPathOf(options), { force: true });
    const snapshotFd = options.snapshot === undefined ? undefined : openSync(options.snapshot, 'r');
    const binary = qemuBinary(options.manifest.architecture);
    const started = performance.now();
    let child: ChildProcess;
    try {
      child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe', ...(snapshotFd === undefined ? [] : [snapshotFd])] });
    } finally {
      if (snapshotFd !== undefined) closeSync(snapshotFd);
    }
    const run = watchProcess(child, binary, options, log, cpuQuota);
    try {
      if (child.pid === undefined) await run.failed;
      if (cpuQuota) run.cgroup = cpuQuota.confine(`${options.id}-${child.pid}`, child.pid!, options.cpuQuotaPercent!);
      const qmp = await Promise.race([QmpClient.connect(qmpPathOf(options), QMP_CONNECT_TIMEOUT_MS, run.abort.signal), run.failed]);
      const qemu = new QemuProcess(child, qmp, options, run.ended);
      if (options.snapshot) await Promise.race([qemu.finishRestore(), run.failed]);
      log.info({ pid: child.pid, accel: options.accel, from: options.snapshot ? 'snapshot' : options.incoming ? 'incoming migration' : 'boot', startMs: Math.round(performance.now() - started) }, 'QEMU started');
      return qemu;
    } catch (error) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await run.ended;
      throw new Error(`QEMU for ${options.id} (${options.manifest.name}) did not start: ${(error as Error).message}${run.stderrTail() ? `\n${run.stderrTail()}` : ''}`);
    }
  }

  /** A snapshot's stream is being read at start: wait for the end of it and run the guest, which was paused when saved. */
  private async finishRestore(): Promise<void> {
    const deadline = performance.now() + SNAPSHOT_TIMEOUT_MS;
    let info = await this.queryMigrate();
    while (!TERMINAL_MIGRATION_STATUSES.has(info.status)) {
      if (performance.now() > deadline) throw new Error(`restoring ${this.options.snapshot} still ${info.status} after ${SNAPSHOT_TIMEOUT_MS} ms`);
      await sleep(MIGRATION_POLL_MS);
      info = await this.queryMigrate();
    }
    if (info.status !== 'completed') throw new Error(`restoring ${this.options.snapshot} ${info.status}${info.error ? `: ${info.error}` : ''}`);
    if ((await this.status()) === 'paused') await this.resume();
  }

  async status(): Promise<string> {
    return (await this.qmp.query('query-status', StatusSchema)).status;
  }

  async pause(): Promise<void> {
    await this.qmp.execute('stop');
  }

  async resume(): Promise<void> {
    await this.qmp.execute('cont');
  }

  /** Asks QEMU to quit; kills it if it is still there after `timeoutMs`. Resolves once it is gone. */
  async quit(timeoutMs = DEFAULT_QUIT_TIMEOUT_MS): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.qmp.execute('quit', undefined, timeoutMs).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Starts a live migration to `uri` (QEMU's syntax: `tcp:host:port`, `unix:path`); returns at once. */
  async migrate(uri: string): Promise<void> {
    await this.qmp.execute('migrate', { uri });
  }

  /** For a QEMU started with `incoming: 'defer'`: listen on `uri` for the migration stream. */
  async migrateIncoming(uri: string): Promise<void> {
    await this.qmp.execute('migrate-incoming', { uri });
  }

  async queryMigrate(): Promise<MigrationInfo> {
    return migrationInfo(await this.qmp.query('query-migrate', MigrateInfoSchema));
  }

  /** Polls until the migration completed, failed or was cancelled, and says which; rejects only if it is still going after `timeoutMs`. */
  async waitMigration(timeoutMs: number, onProgress?: (info: MigrationInfo) => void): Promise<MigrationInfo> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const info = await this.queryMigrate();
      onProgress?.(info);
      if (TERMINAL_MIGRATION_STATUSES.has(info.status)) return info;
      if (performance.now() > deadline) throw new Error(`migration of ${this.options.id} still ${info.status} after ${timeoutMs} ms`);
      await sleep(MIGRATION_POLL_MS);
    }
  }

  async cancelMigration(): Promise<void> {
    await this.qmp.execute('migrate_cancel');
  }

  /**
   * Writes the whole VM state to `file`, which `snapshot` starts from later. The guest is paused
   * first and stays paused: the caller quits QEMU or resumes it. QEMU migrates into a unix socket
   * of ours rather than `exec:` a shell (7.2 has no `file:` migration).
   */
  async saveSnapshot(file: string): Promise<MigrationInfo> {
    const socketPath = join(this.options.runDir, `${this.options.id}.snapshot.sock`);
    const partial = `${file}.part`;
    const { 'max-bandwidth': bandwidth } = await this.qmp.query('query-migrate-parameters', MigrateParametersSchema);
    const receiver = await receiveOne(socketPath, partial);
    try {
      await this.pause();
      await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': SNAPSHOT_BANDWIDTH_BYTES_PER_S });
      await this.migrate(`unix:${socketPath}`);
      const info = await this.waitMigration(SNAPSHOT_TIMEOUT_MS);
      if (info.status !== 'completed') throw new Error(`snapshot of ${this.options.id} ${info.status}${info.error ? `: ${info.error}` : ''}`);
      await receiver.written;
      await rename(partial, file);
      return info;
    } catch (error) {
      receiver.close();
      await receiver.written.catch(() => undefined);
      await rm(partial, { force: true });
      throw error;
    } finally {
      receiver.close();
      await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': bandwidth }).catch(() => undefined);
    }
  }

  /** The end of what the guest wrote to its serial console. */
  consoleTail(bytes = 4096): string {
    return fileTail(this.consolePath, bytes);
  }
}

/** The console of workload `id` in `runDir`, running or not: its last `bytes`, or '' if it never had one. */
export function consoleTail(runDir: string, id: string, bytes = 4096): string {
  return fileTail(consolePathOf({ runDir, id }), bytes);
}

function fileTail(path: string, bytes: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(bytes, size);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

async function checkReadable(options: QemuOptions): Promise<void> {
  const files = [...Object.entries(options.artifacts), ...(options.snapshot ? [['snapshot', options.snapshot]] : [])];
  for (const [role, path] of files) {
    await access(path!, constants.R_OK).catch((error: NodeJS.ErrnoException) => {
      throw new Error(`cannot run ${options.id} (${options.manifest.name}): ${role} ${path}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
    });
  }
}

interface Ending {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface ProcessWatch {
  /** Resolves once QEMU is gone and cleaned up after. */
  ended: Promise<Ending>;
  /** Rejects when QEMU ends: raced against each step of starting it. */
  failed: Promise<never>;
  abort: AbortController;
  stderrTail(): string;
  cgroup?: string;
}

/** Follows a spawned QEMU: logs what it says, and when it ends, cleans up after it. */
function watchProcess(child: ChildProcess, binary: string, options: QemuOptions, log: Logger, cpuQuota: CpuQuota | undefined): ProcessWatch {
  let stderr = '';
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString();
    stderr = (stderr + text).slice(-STDERR_TAIL_CHARS);
    for (const line of text.split('\n')) if (line.trim()) log.warn({ qemu: line.trim() }, 'QEMU says');
  };
  child.stdout!.on('data', onOutput);
  child.stderr!.on('data', onOutput);
  const abort = new AbortController();
  const watch: ProcessWatch = { ended: undefined!, failed: undefined!, abort, stderrTail: () => stderr.trim() };
  watch.ended = new Promise((resolve) => {
    const gone = (code: number | null, signal: NodeJS.Signals | null) => {
      abort.abort();
      rmSync(qmpPathOf(options), { force: true });
      if (watch.cgroup) cpuQuota!.release(watch.cgroup, log);
      log.info({ pid: child.pid, code, signal }, 'QEMU exited');
      resolve({ code, signal });
    };
    child.once('exit', gone);
    child.once('error', () => gone(null, null));
  });
  watch.failed = new Promise((_, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === 'ENOENT' ? `${binary} is not installed` : `cannot run ${binary}: ${error.message}`)),
    );
    child.once('exit', (code, signal) => reject(new Error(`QEMU exited (${signal ?? `code ${code}`})`)));
  });
  watch.failed.catch(() => undefined);
  return watch;
}

/** Accepts one connection on `socketPath` and writes what it sends to `file`. */
async function receiveOne(socketPath: string, file: string): Promise<{ written: Promise<void>; close(): void }> {
  rmSync(socketPath, { force: true });
  let settle!: { resolve: () => void; reject: (error: Error) => void };
  const written = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // Awaited only once QEMU says it is done; a failure before then must not count as unhandled.
  written.catch(() => undefined);
  const server = createServer((socket) => {
    server.close();
    pipeline(socket, createWriteStream(file)).then(settle.resolve, settle.reject);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  return {
    written,
    close: () => {
      server.close();
      settle.reject(new Error('snapshot receiver closed'));
      rmSync(socketPath, { force: true });
    },
  };
}

/**
 * A CPU cap on whole processes through the kernel's cgroup cpu controller: cgroup v2 (`cpu.max`)
 * when the unified hierarchy has it, else v1 (`cpu.cfs_quota_us`). Each process gets its own
 * group under `edge-agent/`, made after the process exists and removed once it has ended.
 */
class CpuQuota {
  private static readonly PERIOD_US = 100_000;

  private constructor(
    private readonly parent: string,
    private readonly version: 1 | 2,
  ) {}

  static forHost(): CpuQuota {
    const root = '/sys/fs/cgroup';
    const controllers = existsSync(join(root, 'cgroup.controllers')) ? readFileSync(join(root, 'cgroup.controllers'), 'utf8').split(/\s+/) : [];
    const quota = controllers.includes('cpu')
      ? new CpuQuota(join(root, 'edge-agent'), 2)
      : existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))
        ? new CpuQuota(join(root, 'cpu', 'edge-agent'), 1)
        : undefined;
    if (!quota) throw new Error('cpuQuotaPercent needs the cgroup cpu controller (cgroup v2 at /sys/fs/cgroup, or v1 at /sys/fs/cgroup/cpu), and this host has neither');
    try {
      mkdirSync(quota.parent, { recursive: true });
      // v2 hands a controller down only where every level above enables it for its children.
      if (quota.version === 2) for (const dir of [root, quota.parent]) writeFileSync(join(dir, 'cgroup.subtree_control'), '+cpu');
    } catch (error) {
      throw new Error(`cpuQuotaPercent: cannot set up cgroup ${quota.parent}: ${(error as Error).message}`);
    }
    return quota;
  }

  /** Puts `pid` (all its threads) in a new group `name` limited to `percent` of one core; returns the group's path. */
  confine(name: string, pid: number, percent: number): string {
    const dir = join(this.parent, name);
    mkdirSync(dir);
    const quotaUs = Math.round((percent / 100) * CpuQuota.PERIOD_US);
    try {
      if (this.version === 2) {
        writeFileSync(join(dir, 'cpu.max'), `${quotaUs} ${CpuQuota.PERIOD_US}`);
      } else {
        writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CpuQuota.PERIOD_US));
        writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
      }
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch (error) {
      rmdirSync(dir);
      throw new Error(`cpuQuotaPercent: cannot confine QEMU in cgroup ${dir}: ${(error as Error).message}`);
    }
    return dir;
  }

  release(dir: string, log: Logger): void {
    try {
      rmdirSync(dir);
    } catch (error) {
      log.warn({ cgroup: dir, err: (error as Error).message }, 'cannot remove the cgroup of an ended QEMU');
    }
  }
}

