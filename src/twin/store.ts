/**
 * The twin's tables on the database engine: devices, twin properties and their history. Writes
 * join the engine's group commit; within a batch only the last state of a twin property is
 * written, and every reported value still goes to the history.
 */
import type { Database } from '../db/database.js';
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
  history_seq INTEGER NOT NULL, id INTEGER NOT NULL UNIQUE,
  PRIMARY KEY (device_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twin_history (
  -- twin id × HISTORY_STRIDE + slot: an integer key keeps the hot insert cheap.
  id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, value TEXT NOT NULL, ts INTEGER NOT NULL
);
`;

/** Which keys the DeviceModel defines (the others are bounded), and when a twin was deleted (tombstones are purged). */
const MODEL_KEYS_AND_TOMBSTONES = `
ALTER TABLE twin ADD COLUMN in_model INTEGER NOT NULL DEFAULT 0;
ALTER TABLE twin ADD COLUMN deleted_at INTEGER;
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
  id: number;
  in_model: number;
  deleted_at: number | null;
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

/** A twin property queued for the next commit; its row is made at the commit, from its latest state. */
interface PendingTwin {
  deviceId: string;
  key: string;
  property: TwinProperty;
  twinId: number;
}

function twinRow({ deviceId, key, property: p, twinId }: PendingTwin): unknown[] {
  return [
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
    twinId,
    p.inModel ? 1 : 0,
    p.deletedAt ?? null,
  ];
}

export interface HistoryEntry {
  value: string;
  timestamp: number;
}

/** History slots per twin property; the configured history size stays below it. */
const HISTORY_STRIDE = 1 << 14;

function version(cloud: number | null, edge: number | null): TwinVersion | undefined {
  return cloud === null || edge === null ? undefined : { cloud, edge };
}

export class TwinStore {
  /** Twin properties to write, by `deviceId\0key`: the last one queued wins; made rows only at the commit. */
  private readonly pendingTwins = new Map<string, PendingTwin>();
  private readonly pendingHistory: unknown[][] = [];
  /** Integer ids of twin properties by `deviceId\0key`, which key their history. */
  private readonly twinIds = new Map<string, number>();
  private nextTwinId = 1;
  private readonly statements;

  constructor(
    private readonly db: Database,
    private readonly historySize: number,
  ) {
    db.migrate({ owner: 'twin', steps: [SCHEMA, MODEL_KEYS_AND_TOMBSTONES] });
    this.statements = {
      upsertDevice: this.db.prepare(
        `INSERT INTO device (id, namespace, name, description, state, last_online, attributes, managed)
         VALUES (@id, @namespace, @name, @description, @state, @last_online, @attributes, @managed)
         ON CONFLICT(id) DO UPDATE SET namespace=excluded.namespace, name=excluded.name, description=excluded.description,
           state=excluded.state, last_online=excluded.last_online, attributes=excluded.attributes, managed=excluded.managed`,
      ),
      deleteDevice: this.db.prepare('DELETE FROM device WHERE id = ?'),
      deleteTwins: this.db.prepare('DELETE FROM twin WHERE device_id = ?'),
      deleteHistory: this.db.prepare(`DELETE FROM twin_history WHERE id / ${HISTORY_STRIDE} IN (SELECT id FROM twin WHERE device_id = ?)`),
      deleteTwin: this.db.prepare('DELETE FROM twin WHERE device_id = ? AND key = ?'),
      deleteTwinHistory: this.db.prepare('DELETE FROM twin_history WHERE id BETWEEN ? AND ?'),
      upsertTwin: this.db.prepare(
        `INSERT OR REPLACE INTO twin (device_id, key, type, optional, expected, expected_ts, expected_cloud, expected_edge,
           actual, actual_ts, actual_cloud, actual_edge, history_seq, id, in_model, deleted_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      putHistory: this.db.prepare('INSERT OR REPLACE INTO twin_history (id, seq, value, ts) VALUES (?, ?, ?, ?)'),
      history: this.db.prepare('SELECT value, ts FROM twin_history WHERE id BETWEEN ? AND ? ORDER BY seq DESC LIMIT ?'),
    };
    for (const row of this.db.prepare('SELECT device_id, key, id FROM twin').all() as Array<Pick<TwinRow, 'device_id' | 'key' | 'id'>>) {
      this.twinIds.set(`${row.device_id}\0${row.key}`, row.id);
      this.nextTwinId = Math.max(this.nextTwinId, row.id + 1);
    }
    // Device writes go through the queue, in order; the twin rows and history of a batch after them.
    db.addBatchWriter(() => this.takeBatch());
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
        inModel: row.in_model === 1,
        deletedAt: row.deleted_at ?? undefined,
      });
    }
    return [...devices.values()];
  }

  history(deviceId: string, key: string, limit = this.historySize): HistoryEntry[] {
    const id = this.twinIds.get(`${deviceId}\0${key}`);
    if (id === undefined) return [];
    const first = id * HISTORY_STRIDE;
    const rows = this.statements.history.all(first, first + HISTORY_STRIDE - 1, limit) as Array<{ value: string; ts: number }>;
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
    this.db.queue(() => this.statements.upsertDevice.run(row));
  }

  deleteDevice(id: string): void {
    const prefix = `${id}\0`;
    const ids = new Set<number>();
    for (const [key, twinId] of this.twinIds) {
      if (!key.startsWith(prefix)) continue;
      ids.add(twinId);
      this.twinIds.delete(key);
      this.pendingTwins.delete(key);
    }
    this.dropPendingHistory(ids);
    this.db.queue(() => {
      this.statements.deleteHistory.run(id);
      this.statements.deleteTwins.run(id);
      this.statements.deleteDevice.run(id);
    });
  }

  /** Queues the removal of one twin property and its history (a purged tombstone). */
  deleteTwin(deviceId: string, key: string): void {
    const ref = `${deviceId}\0${key}`;
    const twinId = this.twinIds.get(ref);
    if (twinId === undefined) return;
    this.twinIds.delete(ref);
    this.pendingTwins.delete(ref);
    this.dropPendingHistory(new Set([twinId]));
    const first = twinId * HISTORY_STRIDE;
    this.db.queue(() => {
      this.statements.deleteTwinHistory.run(first, first + HISTORY_STRIDE - 1);
      this.statements.deleteTwin.run(deviceId, key);
    });
  }

  /** Queues the twin property; with `reported`, also records the reported value in the bounded history. */
  saveTwin(deviceId: string, key: string, p: TwinProperty, reported?: boolean): void {
    const ref = `${deviceId}\0${key}`;
    let twinId = this.twinIds.get(ref);
    if (twinId === undefined) {
      twinId = this.nextTwinId++;
      this.twinIds.set(ref, twinId);
    }
    this.pendingTwins.set(ref, { deviceId, key, property: p, twinId });
    if (reported && p.actual) this.pendingHistory.push([twinId * HISTORY_STRIDE + (p.historySeq % this.historySize), p.historySeq, p.actual.value, p.actual.timestamp]);
    this.db.schedule();
  }

  /** Resolves when everything queued so far is committed. */
  flushed(): Promise<void> {
    return this.db.flushed();
  }

  /** Forgets the uncommitted history of twins about to be deleted. */
  private dropPendingHistory(twinIds: Set<number>): void {
    for (let i = this.pendingHistory.length - 1; i >= 0; i--) {
      if (twinIds.has(Math.floor((this.pendingHistory[i]![0] as number) / HISTORY_STRIDE))) this.pendingHistory.splice(i, 1);
    }
  }

  /** Calls back once everything queued so far is committed, or has failed to be. */
  afterCommit(committed: () => void, failed: (error: unknown) => void): void {
    this.db.afterCommit(committed, failed);
  }

  /** The twin rows and history of this batch, taken out: a failed commit drops them, and the twin reloads what SQLite holds. */
  private takeBatch(): () => void {
    const twins = [...this.pendingTwins.values()];
    this.pendingTwins.clear();
    const history = this.pendingHistory.splice(0);
    return () => {
      for (const twin of twins) this.statements.upsertTwin.run(twinRow(twin));
      for (const row of history) this.statements.putHistory.run(row);
    };
  }
}
