/**
 * Devices and DeviceModels the cloud sent, kept in SQLite beside the twin, so that after a reboot
 * without the cloud the agent serves them from here alone.
 */
import type { Database } from '../db/database.js';

export type CloudKind = 'device' | 'devicemodel';

export interface CloudObject {
  kind: CloudKind;
  /** `<namespace>/<name>` */
  id: string;
  resourceVersion?: string;
  object: Record<string, unknown>;
}

export class CloudObjects {
  private readonly objects = new Map<string, CloudObject>();
  private readonly statements;

  /** Its table must exist: the cloud module migrates it (`cloudMigrations`). */
  constructor(private readonly store: Database) {
    this.statements = {
      put: store.prepare('INSERT OR REPLACE INTO cloud_object (kind, id, resource_version, body) VALUES (?, ?, ?, ?)'),
      delete: store.prepare('DELETE FROM cloud_object WHERE kind = ? AND id = ?'),
    };
    const rows = store.prepare('SELECT kind, id, resource_version, body FROM cloud_object').all() as Array<{ kind: CloudKind; id: string; resource_version: string | null; body: string }>;
    for (const row of rows) this.objects.set(`${row.kind}:${row.id}`, { kind: row.kind, id: row.id, resourceVersion: row.resource_version ?? undefined, object: JSON.parse(row.body) as Record<string, unknown> });
  }

  get(kind: CloudKind, id: string): CloudObject | undefined {
    return this.objects.get(`${kind}:${id}`);
  }

  has(kind: CloudKind, id: string): boolean {
    return this.objects.has(`${kind}:${id}`);
  }

  list(): CloudObject[] {
    return [...this.objects.values()];
  }

  /** Stored with the next commit (await the database's flushed() before acknowledging it). */
  put(object: CloudObject): void {
    this.objects.set(`${object.kind}:${object.id}`, object);
    this.store.queue(() => this.statements.put.run(object.kind, object.id, object.resourceVersion ?? null, JSON.stringify(object.object)));
  }

  delete(kind: CloudKind, id: string): boolean {
    const existed = this.objects.delete(`${kind}:${id}`);
    this.store.queue(() => this.statements.delete.run(kind, id));
    return existed;
  }
}
