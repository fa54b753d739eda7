/**
 * One workload's QEMU process, driven through QMP: started from an image's artifacts with its
 * caps, recorded as this agent's (pidfiles.ts), its serial console written to a bounded file
 * (console.ts), paused, resumed, migrated live, saved to a snapshot file and started again from one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, createWriteStream, openSync, rmSync } from 'node:fs';
import { access, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as v from 'valibot';
import type { Logger } from '../../log.js';
import { kernelHasMptcp } from '../../mptcp.js';
import { makeDirPrivate } from '../../private-dirs.js';
import { timedOut, withTimeout } from '../../timeout.js';
import type { Exit, Guest, MigrationInfo, StreamListen, StreamTarget } from '../runtime.js';
import { qemuBinary } from './accel.js';
import { CONSOLE_FD, qemuArgs, qmpPathOf, SNAPSHOT_FD, type QemuOptions } from './args.js';
import { ConsoleFile, consolePathOf, consoleTail } from './console.js';
import { CpuQuota } from './cpu-quota.js';
import { dropTls, listeningPort, removeTls, tcpUri, useTls } from './migration-tls.js';
import { forgetStarted, recordStarted } from './pidfiles.js';
import { QmpClient } from './qmp.js';
import { listening } from '../../listen.js';

const QMP_CONNECT_TIMEOUT_MS = 10_000;
/**
 * How long a QEMU that failed to start is given to exit by itself: one that refuses its options
 * exits at once, but QMP may see its socket close (EPIPE) before its exit is reaped.
 */
const EXIT_GRACE_MS = 2000;
const SNAPSHOT_TIMEOUT_MS = 60_000;
const MIGRATION_POLL_MS = 20;
const DEFAULT_QUIT_TIMEOUT_MS = 5000;
const STDERR_TAIL_CHARS = 4000;
/** QEMU's default (32 MiB/s) protects a real link; a snapshot only goes to a local file. */
const SNAPSHOT_BANDWIDTH_BYTES_PER_S = 8 << 30;

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

/** What QEMU runs with (its command line), and what the agent keeps of it besides. */
export interface QemuProcessOptions extends QemuOptions {
  /** Where the agent records the QEMUs it started (pidfiles.ts): in its data dir, which no other agent shares. */
  pidDir: string;
  /** The console file is cut back to its newest half when it would pass this (console.ts). */
  consoleMaxBytes: number;
}

const exitReason = ({ code, signal }: Exit) => `QEMU exited (${signal ?? `code ${code}`})`;

export class QemuProcess implements Guest {
  readonly pid: number;
  readonly consolePath: string;
  /** Migrations over TLS this QEMU has set up: each gets credentials of its own, as a failed one's may still be held. */
  private tlsSetups = 0;

  private constructor(
    private readonly child: ChildProcess,
    /** The QEMU runtime's own handle on the guest: nothing outside it reaches past the Guest contract. */
    readonly qmp: QmpClient,
    private readonly options: QemuProcessOptions,
    readonly exited: Promise<Exit>,
  ) {
    this.pid = child.pid!;
    this.consolePath = consolePathOf(options);
  }

  get accel(): string {
    return this.options.accel;
  }

  /**
   * Spawns QEMU and resolves once QMP answers (and, from a snapshot, once the guest runs again);
   * on any failure no QEMU is left, and when QEMU ended by itself its exit and stderr are the reason.
   */
  static async start(options: QemuProcessOptions, log: Logger): Promise<QemuProcess> {
    const args = qemuArgs(options);
    await checkReadable(options);
    const cpuQuota = options.cpuQuotaPercent === undefined ? undefined : CpuQuota.forHost();
    // The guests' sockets, consoles and snapshots: for this user only, also if it was made wider before.
    makeDirPrivate(options.runDir);
    rmSync(qmpPathOf(options), { force: true });
    const binary = qemuBinary(options.manifest.architecture);
    const started = performance.now();
    const consoleFile = new ConsoleFile(consolePathOf(options), options.consoleMaxBytes);
    let snapshotFd: number | undefined;
    let child: ChildProcess;
    try {
      if (options.snapshot !== undefined) snapshotFd = openSync(options.snapshot, 'r');
      child = spawn(binary, args, { stdio: qemuStdio(snapshotFd) });
    } catch (error) {
      consoleFile.close();
      throw error;
    } finally {
      if (snapshotFd !== undefined) closeSync(snapshotFd);
    }
    consoleFile.follow(child.stdio[CONSOLE_FD] as Readable, log);
    const run = watchProcess(child, binary, options, log, cpuQuota);
    try {
      if (child.pid === undefined) await run.failed;
      recordStarted(options.pidDir, options.id, child.pid!);
      if (cpuQuota) run.cgroup = cpuQuota.confine(`${options.id}-${child.pid}`, child.pid!, options.cpuQuotaPercent!);
      const qmp = await Promise.race([QmpClient.connect(qmpPathOf(options), QMP_CONNECT_TIMEOUT_MS, run.abort.signal), run.failed]);
      const qemu = new QemuProcess(child, qmp, options, run.ended);
      if (options.snapshot) await Promise.race([qemu.finishRestore(), run.failed]);
      log.info({ pid: child.pid, accel: options.accel, from: options.snapshot ? 'snapshot' : options.incoming ? 'incoming migration' : 'boot', startMs: Math.round(performance.now() - started) }, 'QEMU started');
      return qemu;
    } catch (error) {
      const exit = await withTimeout(run.ended, EXIT_GRACE_MS, timedOut('exit', EXIT_GRACE_MS)).catch(() => undefined);
      const ownExit = exit && (exit.code !== null || exit.signal !== null) ? exit : undefined;
      if (!exit) child.kill('SIGKILL');
      await run.ended;
      const reason = ownExit ? exitReason(ownExit) : (error as Error).message;
      throw new Error(`QEMU for ${options.id} (${options.manifest.name}) did not start: ${reason}${run.stderrTail() ? `\n${run.stderrTail()}` : ''}`);
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

  async capMigrationBandwidth(bytesPerSecond: number): Promise<void> {
    await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': Math.round(bytesPerSecond) });
  }

  async limitMigrationDowntime(ms: number): Promise<void> {
    await this.qmp.execute('migrate-set-parameters', { 'downtime-limit': Math.round(ms) });
  }

  /** Starts a live migration to `target`, QEMU to QEMU over mutual TLS with the pinned certificates (migration-tls.ts); returns at once. */
  async migrateTo(target: StreamTarget): Promise<void> {
    if (this.tlsSetups > 0) await removeTls(this.qmp, this.tlsId());
    this.tlsSetups++;
    await useTls(this.qmp, this.tlsDir(), this.tlsId(), 'client', target.tls, target.peerName);
    await this.migrateOut(tcpUri(target.host, target.port, target.mptcp));
  }

  /**
   * For a QEMU started with `incoming: 'defer'`: listen on `listen.host` over mutual TLS for the
   * stream; says the port it took. An MPTCP listener where the kernel has it: it takes a pooled
   * stream's subflows, and plain TCP as well.
   */
  async listenForMigration(listen: StreamListen): Promise<number> {
    this.tlsSetups++;
    await useTls(this.qmp, this.tlsDir(), this.tlsId(), 'server', listen.tls);
    await this.migrateIncoming(tcpUri(listen.host, 0, kernelHasMptcp()));
    return listeningPort(this.qmp);
  }

  private tlsId(): string {
    return `migration-tls-${this.tlsSetups}`;
  }

  private tlsDir(): string {
    return join(this.options.runDir, `${this.options.id}.tls`);
  }

  /** Starts a live migration to `uri` (QEMU's syntax: `tcp:host:port`, `unix:path`), as set up before; returns at once. */
  async migrateOut(uri: string): Promise<void> {
    await this.qmp.execute('migrate', { uri });
  }

  async cancelMigration(): Promise<void> {
    await this.qmp.execute('migrate_cancel');
  }

  /** For a QEMU started with `incoming: 'defer'`: listen on `uri` for the migration stream. */
  async migrateIncoming(uri: string): Promise<void> {
    await this.qmp.execute('migrate-incoming', { uri });
  }

  async queryMigrate(): Promise<MigrationInfo> {
    return migrationInfo(await this.qmp.query('query-migrate', MigrateInfoSchema));
  }

  /** Polls until the migration completed, failed or was cancelled, and says which; rejects only if it is still going after `timeoutMs`. */
  async awaitMigration(timeoutMs: number, onProgress?: (info: MigrationInfo) => void): Promise<MigrationInfo> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const info = await this.queryMigrate();
      onProgress?.(info);
      if (TERMINAL_MIGRATION_STATUSES.has(info.status)) return info;
      if (performance.now() > deadline) throw new Error(`migration of ${this.options.id} still ${info.status} after ${timeoutMs} ms`);
      await sleep(MIGRATION_POLL_MS);
    }
  }

  /**
   * Writes the whole VM state to `file`, which `snapshot` starts from later. The guest is paused
   * first and stays paused: the caller quits QEMU or resumes it. QEMU migrates into a unix socket
   * of ours rather than `exec:` a shell (7.2 has no `file:` migration).
   */
  async snapshot(file: string): Promise<MigrationInfo> {
    const socketPath = join(this.options.runDir, `${this.options.id}.snapshot.sock`);
    const partial = `${file}.part`;
    const { 'max-bandwidth': bandwidth } = await this.qmp.query('query-migrate-parameters', MigrateParametersSchema);
    await rm(partial, { force: true });
    const receiver = await receiveOne(socketPath, partial);
    try {
      await this.pause();
      await dropTls(this.qmp);
      await this.capMigrationBandwidth(SNAPSHOT_BANDWIDTH_BYTES_PER_S);
      await this.migrateOut(`unix:${socketPath}`);
      const info = await this.awaitMigration(SNAPSHOT_TIMEOUT_MS);
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
      await this.capMigrationBandwidth(bandwidth).catch(() => undefined);
    }
  }

  /** The end of what the guest wrote to its serial console. */
  consoleTail(bytes = 4096): string {
    return consoleTail(this.consolePath, bytes);
  }
}

/** QEMU's stdout and stderr are logged; the snapshot it starts from and its console's socket are at the fds its arguments name. */
function qemuStdio(snapshotFd: number | undefined): Array<'ignore' | 'pipe' | number> {
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
  stdio[SNAPSHOT_FD] = snapshotFd ?? 'ignore';
  stdio[CONSOLE_FD] = 'pipe';
  return stdio;
}

async function checkReadable(options: QemuOptions): Promise<void> {
  const files = [...Object.entries(options.artifacts), ...(options.snapshot ? [['snapshot', options.snapshot]] : [])];
  for (const [role, path] of files) {
    await access(path!, constants.R_OK).catch((error: NodeJS.ErrnoException) => {
      throw new Error(`cannot run ${options.id} (${options.manifest.name}): ${role} ${path}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
    });
  }
}

interface ProcessWatch {
  /** Resolves once QEMU is gone, everything it wrote read, and cleaned up after; code and signal null when it never ran. */
  ended: Promise<Exit>;
  /** Rejects when QEMU ends: raced against each step of starting it. */
  failed: Promise<never>;
  abort: AbortController;
  stderrTail(): string;
  cgroup?: string;
}

/** Follows a spawned QEMU: logs what it says, and when it ends, cleans up after it. */
function watchProcess(child: ChildProcess, binary: string, options: QemuProcessOptions, log: Logger, cpuQuota: CpuQuota | undefined): ProcessWatch {
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
  // 'close', not 'exit': it comes once QEMU's output is read to the end, so its last words are in the tail.
  watch.ended = new Promise((resolve) => {
    let gone = false;
    const end = (code: number | null, signal: NodeJS.Signals | null) => {
      if (gone) return;
      gone = true;
      abort.abort();
      rmSync(qmpPathOf(options), { force: true });
      forgetStarted(options.pidDir, options.id);
      if (watch.cgroup) cpuQuota!.release(watch.cgroup, log);
      log.info({ pid: child.pid, code, signal }, 'QEMU exited');
      resolve({ code, signal });
    };
    child.once('close', end);
    child.once('error', () => end(null, null));
  });
  watch.failed = new Promise((_, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === 'ENOENT' ? `${binary} is not installed` : `cannot run ${binary}: ${error.message}`)),
    );
    child.once('close', (code, signal) => reject(new Error(exitReason({ code, signal }))));
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
    // The guest's whole RAM: for this user only (a new file, so its mode is this one).
    pipeline(socket, createWriteStream(file, { flags: 'wx', mode: 0o600 })).then(settle.resolve, settle.reject);
  });
  await listening(server, (done) => server.listen(socketPath, done));
  return {
    written,
    close: () => {
      server.close();
      settle.reject(new Error('snapshot receiver closed'));
      rmSync(socketPath, { force: true });
    },
  };
}
