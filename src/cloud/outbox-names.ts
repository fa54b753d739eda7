/**
 * The strings every queued report repeats (its resource, property names, twin types), stored once
 * in `cloud_outbox_name` and referred to by number from the compact reports: a resource alone is
 * ~40 bytes, its number one or two. Few (devices × properties), so all are kept in memory. A new
 * name is written in the batch of the report that first uses it, and forgotten if that batch
 * fails, so no committed report ever refers to a name that is not committed.
 */
import type { Database, Statement } from '../db/database.js';

export class OutboxNames {
  private readonly ids = new Map<string, number>();
  /** By id: the name as JSON text, as decoding splices it into a message. */
  private readonly json = new Map<number, string>();
  private readonly names = new Map<number, string>();
  private nextId: number;
  private readonly insert: Statement;

  constructor(private readonly store: Database) {
    this.insert = store.prepare('INSERT OR REPLACE INTO cloud_outbox_name (id, name) VALUES (?, ?)');
    const rows = store.prepare('SELECT id, name FROM cloud_outbox_name').all() as Array<{ id: number; name: string }>;
    let last = 0;
    for (const { id, name } of rows) {
      this.remember(id, name);
      last = Math.max(last, id);
    }
    this.nextId = last + 1;
  }

  private remember(id: number, name: string): void {
    this.ids.set(name, id);
    this.names.set(id, name);
    this.json.set(id, JSON.stringify(name));
  }

  /** The number of `name`, given one in the store's current batch if it has none yet. */
  id(name: string): number {
    const known = this.ids.get(name);
    if (known !== undefined) return known;
    const id = this.nextId++;
    this.remember(id, name);
    this.store.queue(() => this.insert.run(id, name));
    this.store.afterCommit(
      () => undefined,
      () => this.forget(id, name),
    );
    return id;
  }

  private forget(id: number, name: string): void {
    this.ids.delete(name);
    this.names.delete(id);
    this.json.delete(id);
  }

  /** The name as JSON text; undefined for a number not stored (a damaged row). */
  jsonOf(id: number): string | undefined {
    return this.json.get(id);
  }

  nameOf(id: number): string | undefined {
    return this.names.get(id);
  }

  /** Drops every name: only when no report is queued, so that names of devices long gone do not pile up. */
  clear(): void {
    this.store.transaction(() => this.store.prepare('DELETE FROM cloud_outbox_name').run());
    this.ids.clear();
    this.names.clear();
    this.json.clear();
    this.nextId = 1;
  }
}
