/**
 * The SQLite engine every module stores through: WAL, per-module migrations, and group commit.
 * Writes are queued and committed together in one transaction per event-loop turn; `flushed()`
 * resolves once a write is on disk, which is when the agent may acknowledge it. Writes queued by
 * different modules in the same turn commit in the same transaction (a twin change and the
 * outbox report of it survive together or not at all).
 */
import BetterSqlite3 from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Statement = BetterSqlite3.Statement;

type Write = () => void;

/** A module's schema as numbered steps: step n runs once, on a database at version n - 1. */
export interface Migrations {
  owner: string;
  steps: readonly string[];
}

export class Database {
  private readonly db: BetterSqlite3.Database;
  private readonly pending: Write[] = [];
  /** Run after the queued writes in every batch: owners that coalesce their rows until the commit (the twin). */
  private readonly batchWriters: Write[] = [];
  private waiters: Array<{ committed: () => void; failed: (e: unknown) => void }> = [];
  private scheduled = false;
  private batch?: Promise<void>;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new BetterSqlite3(file);
    // WAL with synchronous=NORMAL: a committed transaction survives the process being killed;
    // only an OS crash or power loss can take the last transactions back.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
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

  /** Runs `write` at the end of every batch's transaction, after the queued writes. */
  addBatchWriter(write: Write): void {
    this.batchWriters.push(write);
  }

  /** Asks for a batch without queuing a write: for owners whose rows `addBatchWriter` writes. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Runs `writes` in a transaction of their own, now. */
  transaction<T>(writes: () => T): T {
    return this.db.transaction(writes)();
  }

  /** Resolves when everything queued so far is committed. */
  flushed(): Promise<void> {
    if (!this.scheduled) return Promise.resolve();
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
    this.scheduled = false;
    this.batch = undefined;
    const writes = this.pending.splice(0);
    const waiters = this.waiters;
    this.waiters = [];
    try {
      this.db.transaction(() => {
        for (const write of writes) write();
        for (const write of this.batchWriters) write();
      })();
    } catch (error) {
      for (const w of waiters) w.failed(error);
      return;
    }
    for (const w of waiters) w.committed();
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}
