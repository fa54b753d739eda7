/**
 * The mappers that registered over DMI, by protocol, and what each was last sent: kept in the
 * agent's database, because a mapper registers once at its start and an agent restarted under it
 * must still know where it listens and what it already has (EdgeCore keeps mappers in its meta table).
 */
import type { Database, Migrations } from '../db/database.js';
import type { Remove } from '../module.js';

const MIGRATIONS: Migrations = {
  owner: 'dmi',
  steps: [
    `CREATE TABLE IF NOT EXISTS dmi_mapper (protocol TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, api_version TEXT NOT NULL, address TEXT NOT NULL, registered_at TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS dmi_sent (kind TEXT NOT NULL, id TEXT NOT NULL, protocol TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;`,
  ],
};

export interface RegisteredMapper {
  protocol: string;
  name: string;
  version: string;
  apiVersion: string;
  /** The unix socket its DeviceMapperService listens on. */
  address: string;
  registeredAt: string;
}

export type SentKind = 'device' | 'model';

/** What a mapper was last sent of a device or a model: the encoded message, to tell whether a new catalog changes it. */
export interface Sent {
  protocol: string;
  content: string;
}

export class MapperRegistry {
  private readonly mappers = new Map<string, RegisteredMapper>();
  private readonly sent = { device: new Map<string, Sent>(), model: new Map<string, Sent>() };
  private readonly listeners = new Set<() => void>();

  private readonly saveMapper;
  private readonly saveSent;
  private readonly deleteSent;
  private readonly deleteMapper;

  constructor(private readonly db: Database) {
    db.migrate(MIGRATIONS);
    this.saveMapper = db.prepare('INSERT OR REPLACE INTO dmi_mapper (protocol, name, version, api_version, address, registered_at) VALUES (?, ?, ?, ?, ?, ?)');
    this.saveSent = db.prepare('INSERT OR REPLACE INTO dmi_sent (kind, id, protocol, content) VALUES (?, ?, ?, ?)');
    this.deleteSent = db.prepare('DELETE FROM dmi_sent WHERE kind = ? AND id = ?');
    this.deleteMapper = db.prepare('DELETE FROM dmi_mapper WHERE protocol = ?');
    for (const row of db.prepare('SELECT * FROM dmi_mapper').all() as Array<Record<string, string>>) {
      this.mappers.set(row.protocol!, { protocol: row.protocol!, name: row.name!, version: row.version!, apiVersion: row.api_version!, address: row.address!, registeredAt: row.registered_at! });
    }
    for (const row of db.prepare('SELECT * FROM dmi_sent').all() as Array<{ kind: SentKind; id: string; protocol: string; content: string }>) {
      this.sent[row.kind].set(row.id, { protocol: row.protocol, content: row.content });
    }
  }

  get(protocol: string): RegisteredMapper | undefined {
    return this.mappers.get(protocol);
  }

  list(): RegisteredMapper[] {
    return [...this.mappers.values()];
  }

  /** Whether a DMI mapper serves the protocol: its devices are not the in-process mappers'. */
  serves(protocol: string): boolean {
    return this.mappers.has(protocol);
  }

  nameFor(protocol: string): string | undefined {
    return this.mappers.get(protocol)?.name;
  }

  /** Called when a protocol gains or changes its mapper. */
  onChanged(listener: () => void): Remove {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Records the mapper (a second registration for the protocol replaces the first); resolves once committed. */
  async register(mapper: RegisteredMapper): Promise<void> {
    this.db.queue(() => this.saveMapper.run(mapper.protocol, mapper.name, mapper.version, mapper.apiVersion, mapper.address, mapper.registeredAt));
    await this.db.flushed();
    this.mappers.set(mapper.protocol, mapper);
    for (const listener of this.listeners) listener();
  }

  /** Forgets the protocol's mapper and what it was sent; resolves once committed. */
  async forget(protocol: string): Promise<void> {
    for (const kind of ['device', 'model'] as const) for (const id of this.sentFor(kind, protocol)) this.recordSent(kind, id, undefined);
    this.db.queue(() => this.deleteMapper.run(protocol));
    await this.db.flushed();
    this.mappers.delete(protocol);
    for (const listener of this.listeners) listener();
  }

  sentTo(kind: SentKind, id: string): Sent | undefined {
    return this.sent[kind].get(id);
  }

  /** The devices or models the protocol's mapper was last sent. */
  sentFor(kind: SentKind, protocol: string): string[] {
    return [...this.sent[kind]].filter(([, sent]) => sent.protocol === protocol).map(([id]) => id);
  }

  /** The mapper has `sent` now (undefined: it has nothing of it any more). */
  recordSent(kind: SentKind, id: string, sent: Sent | undefined): void {
    if (sent) this.sent[kind].set(id, sent);
    else this.sent[kind].delete(id);
    this.db.queue(() => {
      if (sent) this.saveSent.run(kind, id, sent.protocol, sent.content);
      else this.deleteSent.run(kind, id);
    });
  }
}
