/** Workloads in SQLite: what runs or ran here, where each came from and went, and its history. */
import { Database } from '../db/database.js';
import type { WorkloadDefinition } from './config.js';
import type { ImageManifest } from './types.js';

export type WorkloadState = 'starting' | 'running' | 'paused' | 'stopped' | 'failed' | 'migrated' | 'incoming' | 'idle';

export interface WorkloadRecord {
  name: string;
  definition: WorkloadDefinition;
  state: WorkloadState;
  /** `local`, or the peer it was migrated in from. */
  origin: string;
  /** The peer it was migrated out to, while it runs there. */
  movedTo?: string;
  reason?: string;
  updatedAt: string;
}

export interface HistoryEvent {
  at: string;
  event: string;
  detail?: Record<string, unknown>;
}

/** Step 1 creates only what is missing: databases written before the migration steps keep working. */
const STEPS = [
  `
CREATE TABLE IF NOT EXISTS workload (
  name TEXT PRIMARY KEY, definition TEXT NOT NULL, state TEXT NOT NULL, origin TEXT NOT NULL,
  moved_to TEXT, reason TEXT, updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workload_history (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, at TEXT NOT NULL, event TEXT NOT NULL, detail TEXT
);
CREATE INDEX IF NOT EXISTS workload_history_name ON workload_history (name, id);
`,
  // The images of peers' workloads (their artifacts are in the image store): a peer's workload restarts with the agent.
  `CREATE TABLE peer_image (name TEXT PRIMARY KEY, manifest TEXT NOT NULL) WITHOUT ROWID;`,
];

interface Row {
  name: string;
  definition: string;
  state: WorkloadState;
  origin: string;
  moved_to: string | null;
  reason: string | null;
  updated_at: string;
}

export class WorkloadStore {
  private readonly db: Database;

  /** Opens (or creates) the database file: the workloads keep their own, apart from the twin's. */
  constructor(
    file: string,
    /** Events kept per workload: each new one beyond them removes the oldest. */
    private readonly historySize: number,
  ) {
    this.db = new Database(file);
    try {
      this.db.migrate({ owner: 'workloads', steps: STEPS });
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  list(): WorkloadRecord[] {
    return (this.db.prepare('SELECT * FROM workload ORDER BY name').all() as Row[]).map(fromRow);
  }

  get(name: string): WorkloadRecord | undefined {
    const row = this.db.prepare('SELECT * FROM workload WHERE name = ?').get(name) as Row | undefined;
    return row && fromRow(row);
  }

  /** Saves the record and appends `event` to its history, in one transaction. */
  save(record: Omit<WorkloadRecord, 'updatedAt'>, event: string, detail?: Record<string, unknown>): WorkloadRecord {
    const saved = { ...record, updatedAt: new Date().toISOString() };
    this.db.transaction(() => {
      this.db
        .prepare('INSERT OR REPLACE INTO workload (name, definition, state, origin, moved_to, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(saved.name, JSON.stringify(saved.definition), saved.state, saved.origin, saved.movedTo ?? null, saved.reason ?? null, saved.updatedAt);
      this.db.prepare('INSERT INTO workload_history (name, at, event, detail) VALUES (?, ?, ?, ?)').run(saved.name, saved.updatedAt, event, detail ? JSON.stringify(detail) : null);
      // Everything at or below the id of the newest event beyond the cap (none while there are fewer): the index on (name, id) finds it.
      this.db
        .prepare('DELETE FROM workload_history WHERE name = ? AND id <= (SELECT id FROM workload_history WHERE name = ? ORDER BY id DESC LIMIT 1 OFFSET ?)')
        .run(saved.name, saved.name, this.historySize);
    });
    return saved;
  }

  remove(name: string): void {
    this.db.prepare('DELETE FROM workload WHERE name = ?').run(name);
  }

  /** A peer's image, by `<peer>.<name>`: its manifest as the peer sent it. */
  savePeerImage(name: string, manifest: ImageManifest): void {
    this.db.prepare('INSERT OR REPLACE INTO peer_image (name, manifest) VALUES (?, ?)').run(name, JSON.stringify(manifest));
  }

  removePeerImage(name: string): void {
    this.db.prepare('DELETE FROM peer_image WHERE name = ?').run(name);
  }

  /** The peers' images kept, each manifest as stored (the caller parses it again). */
  peerImages(): Array<{ name: string; manifest: unknown }> {
    return (this.db.prepare('SELECT name, manifest FROM peer_image').all() as Array<{ name: string; manifest: string }>).map((r) => ({ name: r.name, manifest: JSON.parse(r.manifest) as unknown }));
  }

  history(name: string, limit = 50): HistoryEvent[] {
    const rows = this.db.prepare('SELECT at, event, detail FROM workload_history WHERE name = ? ORDER BY id DESC LIMIT ?').all(name, limit) as Array<{ at: string; event: string; detail: string | null }>;
    return rows.map((r) => ({ at: r.at, event: r.event, ...(r.detail ? { detail: JSON.parse(r.detail) as Record<string, unknown> } : {}) }));
  }

  close(): void {
    this.db.close();
  }
}

function fromRow(row: Row): WorkloadRecord {
  return {
    name: row.name,
    definition: JSON.parse(row.definition) as WorkloadDefinition,
    state: row.state,
    origin: row.origin,
    ...(row.moved_to ? { movedTo: row.moved_to } : {}),
    ...(row.reason ? { reason: row.reason } : {}),
    updatedAt: row.updated_at,
  };
}
