/**
 * The SQLite engine every module stores through: WAL, per-module migrations, and group commit.
 * Writes are queued and committed together in one transaction per event-loop turn; `flushed()`
 * resolves once a write is on disk, which is when the agent may acknowledge it. Writes queued by
 * different modules in the same turn commit in the same transaction (a twin change and the
 * outbox report of it survive together or not at all). A damaged file found at the start is
 * moved aside (check.ts); damage found at the start, and commits that keep failing, make
 * `health()` degraded.
 */
import BetterSqlite3 from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import { makeDirPrivate } from '../private-dirs.js';
import { checkDatabaseFile, type Damage } from './check.js';
import type { Synchronous } from './synchronous.js';

export type Statement = BetterSqlite3.Statement;

type Write = () => void;

export interface DatabaseOptions {
  /** When commits reach the disk (synchronous.ts); default `full`. */
  synchronous?: Synchronous;
  /** Where a damaged file moved aside and commits that start or stop failing are reported. */
  log?: Logger;
  /** SQLite's page cache, at most (SQLite's default is 2 MiB a connection; a gateway's twin is read from memory, not SQLite). */
  cacheKiB?: number;
  /**
   * How long a batch nobody waits for gathers writes before it commits (0: at the next turn of
   * the event loop). A batch someone acknowledges from (`flushed()`) commits at once.
   */
  commitWindowMs?: number;
}

const DEFAULT_CACHE_KIB = 512;

export type DatabaseHealth = { status: 'ok' } | { status: 'degraded'; reason: string };

/** A commit that failed (a damaged page, a full or failing disk): answered with 500 and the reason, and logged by the engine once, not by every caller. */
export class StorageError extends AgentError {
  constructor(cause: unknown) {
    super(500, `storage: ${(cause as Error).message}`);
    this.cause = cause;
  }
}

/**
 * Commits count as failing until none has failed for this long: a damaged page fails only the
 * batches that touch it, so a success in between is no recovery, and a log line per change of
 * state would be a line per write again.
 */
const RECOVERED_AFTER_MS = 60_000;

/**
 * Makes `file` and its -wal and -shm files readable by the agent's user only: a database may hold
 * secrets (a cloud Device's broker password). SQLite gives the -wal and -shm files the mode of
 * the database file, so that one is created 0600 before SQLite opens it; files an earlier
 * version left 0644 are narrowed.
 */
function keepPrivate(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    if (existsSync(path) && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  }
}

/** A module's schema as numbered steps: step n runs once, on a database at version n - 1. */
export interface Migrations {
  owner: string;
  steps: readonly string[];
}

export class Database {
  private readonly db: BetterSqlite3.Database;
  private readonly pending: Write[] = [];
  /** Owners that coalesce their rows until the commit (the twin): each hands over its batch's writes, run after the queued ones. */
  private readonly batchWriters: Array<() => Write> = [];
  private waiters: Array<{ committed: () => void; failed: (e: unknown) => void }> = [];
  private scheduled = false;
  /** The pending commit of the scheduled batch: a timer for a window, an immediate once someone waits. */
  private wake?: { cancel(): void; hurried: boolean };
  private readonly commitWindowMs: number;
  private batch?: Promise<void>;
  private readonly log?: Logger;
  /** What the start check found and did, for the whole run. */
  private readonly damage?: Damage;
  private failing?: { since: string; lastMs: number; reason: string };
  /** The page cache's bound, for the memory report. */
  readonly cacheKiB: number;

  constructor(
    private readonly file: string,
    options: DatabaseOptions = {},
  ) {
    this.log = options.log;
    if (file !== ':memory:') {
      makeDirPrivate(dirname(file));
      keepPrivate(file);
      this.damage = checkDatabaseFile(file);
    }
    if (this.damage) {
      this.log?.error({ file, movedTo: this.damage.movedTo, reason: this.damage.reason }, 'database damaged: moved aside, starting with an empty one');
      keepPrivate(file);
    }
    this.db = new BetterSqlite3(file);
    // WAL: readers never wait for the writer, and a commit is one sequential append.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${(options.synchronous ?? 'full').toUpperCase()}`);
    this.cacheKiB = options.cacheKiB ?? DEFAULT_CACHE_KIB;
    this.commitWindowMs = options.commitWindowMs ?? 0;
    this.db.pragma(`cache_size = -${this.cacheKiB}`);
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (owner TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID');
  }

  /** Brings the owner's tables to its latest step. Each module migrates only its own tables, and only when enabled. */
  migrate({ owner, steps }: Migrations): void {
    const row = this.db.prepare('SELECT version FROM schema_version WHERE owner = ?').get(owner) as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current >= steps.length) return;
    this.db.transaction(() => {
      for (const step of steps.slice(current)) this.db.exec(step);
      this.db.prepare('INSERT OR REPLACE INTO schema_version (owner, version) VALUES (?, ?)').run(owner, steps.length);
    })();
  }

  /** A statement on the caller's own tables. */
  prepare(sql: string): Statement {
    return this.db.prepare(sql);
  }

  /** Runs `write` in the next group commit, after the writes queued before it. */
  queue(write: Write): void {
    this.pending.push(write);
    this.schedule();
  }

  /**
   * At every batch, `take` hands over what its owner has pending (and forgets it), to be written
   * at the end of the transaction: taken before the transaction, so a failed commit drops it
   * with the rest instead of carrying it into the next batch.
   */
  addBatchWriter(take: () => Write): void {
    this.batchWriters.push(take);
  }

  /** Asks for a batch without queuing a write: for owners whose rows `addBatchWriter` writes. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Mapper reports arrive spread over each second: one commit (one fsync) per window, not one per device.
    if (this.commitWindowMs === 0) return this.hurry();
    const timer = setTimeout(() => this.flush(), this.commitWindowMs);
    this.wake = { cancel: () => clearTimeout(timer), hurried: false };
  }

  /** Commits the scheduled batch at the next turn of the event loop: an acknowledgement waits for it. */
  private hurry(): void {
    if (this.wake?.hurried) return;
    this.wake?.cancel();
    const immediate = setImmediate(() => this.flush());
    this.wake = { cancel: () => clearImmediate(immediate), hurried: true };
  }

  /** Runs `writes` in a transaction of their own, now. */
  transaction<T>(writes: () => T): T {
    return this.db.transaction(writes)();
  }

  /** Resolves when everything queued so far is committed. */
  flushed(): Promise<void> {
    if (!this.scheduled) return Promise.resolve();
    this.hurry();
    // One promise per batch: at thousands of updates a second, a promise each is garbage.
    this.batch ??= new Promise((resolve, reject) => this.afterCommit(resolve, reject));
    return this.batch;
  }

  /** Calls back once everything queued so far is committed, or has failed to be. */
  afterCommit(committed: () => void, failed: (error: unknown) => void): void {
    if (!this.scheduled) return committed();
    this.waiters.push({ committed, failed });
  }

  /** Commits what is queued now, synchronously. */
  flush(): void {
    this.wake?.cancel();
    this.wake = undefined;
    this.scheduled = false;
    this.batch = undefined;
    const writes = [...this.pending.splice(0), ...this.batchWriters.map((take) => take())];
    const waiters = this.waiters;
    this.waiters = [];
    let failure: StorageError | undefined;
    try {
      this.db.transaction(() => {
        for (const write of writes) write();
      })();
    } catch (error) {
      failure = new StorageError(error);
    }
    if (!failure) this.committed();
    // A write queued after close() fails too, but not for anything wrong with the file.
    else if (this.db.open) this.commitFailed(failure);
    for (const w of waiters) {
      // One listener that throws (a reload that reads the damaged page) must not leave the others unanswered.
      try {
        if (failure) w.failed(failure);
        else w.committed();
      } catch (error) {
        this.log?.error({ err: error }, 'commit listener failed');
      }
    }
  }

  /** Degraded for the whole run once the start check moved a damaged file aside, and while commits keep failing. */
  health(): DatabaseHealth {
    const problems: string[] = [];
    if (this.damage) problems.push(`${basename(this.file)} was damaged (${this.damage.reason}): moved aside to ${basename(this.damage.movedTo)}, started empty`);
    if (this.failing) problems.push(`commits failing since ${this.failing.since}: ${this.failing.reason}`);
    return problems.length === 0 ? { status: 'ok' } : { status: 'degraded', reason: problems.join('; ') };
  }

  private commitFailed(error: StorageError): void {
    // A page that could not be read stays in SQLite's cache as it was read: dropped, the next commit reads it from the disk again.
    this.db.pragma('shrink_memory');
    if (!this.failing) this.log?.error({ file: this.file, reason: error.message }, 'database commits failing');
    this.failing = { since: this.failing?.since ?? new Date().toISOString(), lastMs: performance.now(), reason: error.message };
  }

  private committed(): void {
    if (!this.failing || performance.now() - this.failing.lastMs < RECOVERED_AFTER_MS) return;
    this.log?.info({ file: this.file }, 'database commits succeed again');
    this.failing = undefined;
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}
