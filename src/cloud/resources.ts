/**
 * The other resources the cloud sends (pods, configmaps, secrets, services, …), kept as EdgeCore's
 * metamanager keeps them (models.Meta: key, type, value) so that they can be acknowledged once
 * stored; the agent runs no pods, it only holds and lists them. Values stay in SQLite, not in memory.
 */
import { byCodeUnits } from '../compare.js';
import type { Database } from '../db/database.js';

export interface StoredResource {
  /** The message's resource, `<namespace>/<type>[/<name>]`, as metamanager's key. */
  key: string;
  type: string;
  resourceVersion?: string;
}

export class CloudResources {
  private readonly index = new Map<string, StoredResource>();
  private readonly statements;

  /** Its table must exist: the cloud module migrates it (`cloudMigrations`). */
  constructor(private readonly store: Database) {
    this.statements = {
      put: store.prepare('INSERT OR REPLACE INTO cloud_resource (key, type, resource_version, value) VALUES (?, ?, ?, ?)'),
      delete: store.prepare('DELETE FROM cloud_resource WHERE key = ?'),
    };
    const rows = store.prepare('SELECT key, type, resource_version FROM cloud_resource').all() as Array<{ key: string; type: string; resource_version: string | null }>;
    for (const row of rows) this.index.set(row.key, { key: row.key, type: row.type, resourceVersion: row.resource_version ?? undefined });
  }

  list(): StoredResource[] {
    return [...this.index.values()].sort((a, b) => byCodeUnits(a.type, b.type) || byCodeUnits(a.key, b.key));
  }

  /** Stored with the next commit (await the database's flushed() before acknowledging it). */
  put(resource: StoredResource, value: string): void {
    this.index.set(resource.key, resource);
    this.store.queue(() => this.statements.put.run(resource.key, resource.type, resource.resourceVersion ?? null, value));
  }

  delete(key: string): void {
    this.index.delete(key);
    this.store.queue(() => this.statements.delete.run(key));
  }
}
