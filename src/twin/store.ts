/**
 * SQLite persistence of devices and twins. Writes are queued and committed together in one
 * transaction per event-loop turn (group commit); `flushed()` resolves once a write is on disk,
 * which is when the agent may acknowledge it.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DeviceAttribute, DeviceRecord, TwinProperty, TwinVersion } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS device (
  id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
  state TEXT NOT NULL, last_online TEXT NOT NULL, attributes TEXT NOT NULL, managed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twin (
  device_id TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
  expected TEXT, expected_ts INTEGER, expected_cloud INTEGER, expected_edge INTEGER,
  actual TEXT, actual_ts INTEGER, actual_cloud INTEGER, actual_edge INTEGER,
  history_seq INTEGER NOT NULL,
  PRIMARY KEY (device_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twin_history (
  device_id TEXT NOT NULL, key TEXT NOT NULL, slot INTEGER NOT NULL, value TEXT NOT NULL, ts INTEGER NOT NULL,
  PRIMARY KEY (device_id, key, slot)
) WITHOUT ROWID;
`;

interface TwinRow {
  device_id: string;
  key: string;
  type: string;
  optional: number;
  expected: string | null;
  expected_ts: number | null;
  expected_cloud: number | null;
  expected_edge: number | null;
  actual: string | null;
  actual_ts: number | null;
  actual_cloud: number | null;
  actual_edge: number | null;
  history_seq: number;
}

interface DeviceRow {
  id: string;
  namespace: string;
  name: string;
  description: string | null;
  state: string;
  last_online: string;
  attributes: string;
  managed: number;
}

export interface HistoryEntry {
  value: string;
  timestamp: number;
}

type Write = () => void;

function version(cloud: number | null, edge: number | null): TwinVersion | undefined {
  return cloud === null || edge === null ? undefined : { cloud, edge };
}

export class TwinStore {
  private readonly db: Database.Database;
  private readonly pending: Write[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;
  private readonly statements;

  constructor(
    file: string,
    private readonly historySize: number,
  ) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    // WAL with synchronous=NORMAL: a committed transaction survives the process being killed;
    // only an OS crash or power loss can take the last transactions back.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    this.statements = {
      upsertDevice: this.db.prepare(
        `INSERT INTO device (id, namespace, name, description, state, last_online, attributes, managed)
         VALUES (@id, @namespace, @name, @description, @state, @last_online, @attributes, @managed)
         ON CONFLICT(id) DO UPDATE SET namespace=excluded.namespace, name=excluded.name, description=excluded.description,
           state=excluded.state, last_online=excluded.last_online, attributes=excluded.attributes, managed=excluded.managed`,
      ),
      deleteDevice: this.db.prepare('DELETE FROM device WHERE id = ?'),
      deleteTwins: this.db.prepare('DELETE FROM twin WHERE device_id = ?'),
      deleteHistory: this.db.prepare('DELETE FROM twin_history WHERE device_id = ?'),
      upsertTwin: this.db.prepare(
        `INSERT OR REPLACE INTO twin (device_id, key, type, optional, expected, expected_ts, expected_cloud, expected_edge,
           actual, actual_ts, actual_cloud, actual_edge, history_seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      putHistory: this.db.prepare('INSERT OR REPLACE INTO twin_history (device_id, key, slot, value, ts) VALUES (?, ?, ?, ?, ?)'),
      history: this.db.prepare('SELECT value, ts FROM twin_history WHERE device_id = ? AND key = ? ORDER BY ts DESC, slot DESC LIMIT ?'),
    };
  }

  loadDevices(): DeviceRecord[] {
    const devices = new Map<string, DeviceRecord>();
    for (const row of this.db.prepare('SELECT * FROM device').all() as DeviceRow[]) {
      devices.set(row.id, {
        id: row.id,
        namespace: row.namespace,
        name: row.name,
        description: row.description ?? undefined,
        state: row.state,
        lastOnline: row.last_online,
        attributes: JSON.parse(row.attributes) as Record<string, DeviceAttribute>,
        managed: row.managed === 1,
        twin: new Map(),
      });
    }
    for (const row of this.db.prepare('SELECT * FROM twin').all() as TwinRow[]) {
      devices.get(row.device_id)?.twin.set(row.key, {
        type: row.type,
        optional: row.optional === 1,
        expected: row.expected === null ? undefined : { value: row.expected, timestamp: row.expected_ts ?? 0 },
        actual: row.actual === null ? undefined : { value: row.actual, timestamp: row.actual_ts ?? 0 },
        expectedVersion: version(row.expected_cloud, row.expected_edge),
        actualVersion: version(row.actual_cloud, row.actual_edge),
        historySeq: row.history_seq,
      });
    }
    return [...devices.values()];
  }

  history(deviceId: string, key: string, limit = this.historySize): HistoryEntry[] {
    const rows = this.statements.history.all(deviceId, key, limit) as Array<{ value: string; ts: number }>;
    return rows.map((r) => ({ value: r.value, timestamp: r.ts }));
  }

  saveDevice(device: DeviceRecord): void {
    const row: DeviceRow = {
      id: device.id,
      namespace: device.namespace,
      name: device.name,
      description: device.description ?? null,
      state: device.state,
      last_online: device.lastOnline,
      attributes: JSON.stringify(device.attributes),
      managed: device.managed ? 1 : 0,
    };
    this.pending.push(() => this.statements.upsertDevice.run(row));
    this.schedule();
  }

  deleteDevice(id: string): void {
    this.pending.push(() => {
      this.statements.deleteHistory.run(id);
      this.statements.deleteTwins.run(id);
      this.statements.deleteDevice.run(id);
    });
    this.schedule();
  }

  /** Queues the twin property; with `reported`, also records the reported value in the bounded history. */
  saveTwin(deviceId: string, key: string, p: TwinProperty, reported?: boolean): void {
    const params = [
      deviceId,
      key,
      p.type,
      p.optional ? 1 : 0,
      p.expected?.value ?? null,
      p.expected?.timestamp ?? null,
      p.expectedVersion?.cloud ?? null,
      p.expectedVersion?.edge ?? null,
      p.actual?.value ?? null,
      p.actual?.timestamp ?? null,
      p.actualVersion?.cloud ?? null,
      p.actualVersion?.edge ?? null,
      p.historySeq,
    ];
    const history = reported && p.actual ? [deviceId, key, p.historySeq % this.historySize, p.actual.value, p.actual.timestamp] : undefined;
    this.pending.push(() => {
      this.statements.upsertTwin.run(params);
      if (history) this.statements.putHistory.run(history);
    });
    this.schedule();
  }

  /** Resolves when everything queued so far is committed. */
  flushed(): Promise<void> {
    if (this.pending.length === 0 && !this.scheduled) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Commits what is queued now, synchronously. */
  flush(): void {
    this.scheduled = false;
    const writes = this.pending.splice(0);
    const waiters = this.waiters;
    this.waiters = [];
    try {
      if (writes.length > 0) {
        this.db.transaction(() => {
          for (const write of writes) write();
        })();
      }
      for (const w of waiters) w.resolve();
    } catch (error) {
      for (const w of waiters) w.reject(error);
    }
  }

  close(): void {
    this.flush();
    this.db.close();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }
}
