/**
 * Reports on their way to the cloud, in SQLite beside the twin (tables of `cloudMigrations`): staged in the same transaction
 * as the twin change they report (so they survive exactly when it does), sent in order, deleted
 * once the cloud answers. EdgeCore drops reports while the cloud is away; this keeps them, within
 * a disk quota, optionally coalesced to the latest value per device.
 *
 * A report keeps its message id for good (`<outbox id>-<seq>`): sent again after a reconnect, a
 * restart or an answer that did not come, it is the same message, which the cloud can recognise
 * instead of applying it twice. CloudCore answers nothing when it cannot apply a report (an
 * unknown device, a failed patch): such a report is sent again every `resendMs`, as EdgeCore's
 * devicetwin does, but no longer holds a place in the window, so a few of them cannot stop the rest.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import type { Database } from '../db/database.js';
import type { CloudConfig } from './config.js';


export interface Report {
  seq: number;
  msgId: string;
  resource: string;
  /** The message content, as JSON text. */
  content: string;
}

export interface OutboxStats {
  queued: number;
  bytes: number;
  inFlight: number;
  /** Sent, not answered within `resendMs`: sent again every `resendMs`, outside the window. */
  unconfirmed: number;
  /** Sends of reports the cloud had not answered in time. */
  resent: number;
  dropped: number;
  coalesced: number;
}

/** The latest content of a report not yet sent, which newer values of the same key merge into. */
interface Open {
  seq: number;
  content: Record<string, unknown>;
}

const size = (resource: string, content: string) => resource.length + content.length;

interface Sent {
  seq: number;
  size: number;
  /** When it was last sent (ms). */
  sentAt: number;
}

export class Outbox {
  private readonly id: string;
  private nextSeq: number;
  private queued: number;
  private bytes: number;
  private dropped = 0;
  private coalesced = 0;
  private readonly open = new Map<string, Open>();
  private readonly openKeys = new Map<number, string>();
  /** Answered, their deletion not committed yet: not to be sent again meanwhile. */
  private readonly deleting = new Set<number>();
  /** Dropped for room, their deletion not committed yet. */
  private readonly dropping = new Set<number>();
  private staged: Array<{ seq: number; size: number }> = [];
  /** Sent and not answered yet, by message id, in the window. */
  private readonly inFlight = new Map<string, Sent>();
  /** Sent and not answered within `resendMs`, by message id: out of the window, sent again from time to time. */
  private readonly unconfirmed = new Map<string, Sent>();
  private resent = 0;
  private readonly statements;
  /** The highest seq sent on the current connection. */
  private cursor = 0;

  constructor(
    private readonly store: Database,
    private readonly options: CloudConfig['queue'],
    private readonly log: Logger,
  ) {
    this.statements = {
      insert: store.prepare('INSERT INTO cloud_outbox (seq, resource, content) VALUES (?, ?, ?)'),
      update: store.prepare('UPDATE cloud_outbox SET content = ? WHERE seq = ?'),
      delete: store.prepare('DELETE FROM cloud_outbox WHERE seq = ?'),
      next: store.prepare('SELECT seq, resource, content FROM cloud_outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
      one: store.prepare('SELECT resource, content FROM cloud_outbox WHERE seq = ?'),
      oldest: store.prepare('SELECT seq, length(resource) + length(content) AS size FROM cloud_outbox WHERE seq > ? ORDER BY seq LIMIT 100'),
      meta: store.prepare('SELECT value FROM cloud_meta WHERE key = ?'),
      setMeta: store.prepare('INSERT OR REPLACE INTO cloud_meta (key, value) VALUES (?, ?)'),
    };
    const totals = store.prepare('SELECT count(*) AS n, coalesce(sum(length(resource) + length(content)), 0) AS bytes, coalesce(max(seq), 0) AS last FROM cloud_outbox').get() as {
      n: number;
      bytes: number;
      last: number;
    };
    this.queued = totals.n;
    this.bytes = totals.bytes;
    this.nextSeq = totals.last + 1;
    const stored = this.statements.meta.get('outbox_id') as { value: string } | undefined;
    this.id = stored?.value ?? randomUUID();
    if (!stored) this.statements.setMeta.run('outbox_id', this.id);
  }

  /**
   * Queues a report in the store's current batch. With coalescing, a report with the `key` of one
   * not sent yet is merged into it (`merge(older, newer)`) instead of queued behind it.
   */
  stage(resource: string, content: Record<string, unknown>, key: string, merge: (older: Record<string, unknown>, newer: Record<string, unknown>) => Record<string, unknown>): void {
    const open = this.options.coalesce ? this.open.get(key) : undefined;
    if (open) {
      const before = JSON.stringify(open.content).length;
      open.content = merge(open.content, content);
      const text = JSON.stringify(open.content);
      this.bytes += text.length - before;
      this.coalesced++;
      this.store.queue(() => this.statements.update.run(text, open.seq));
      return;
    }
    const text = JSON.stringify(content);
    const bytes = size(resource, text);
    if (this.bytes + bytes > this.options.maxBytes && !this.makeRoom(bytes)) {
      this.drop(1, 'the queue is full and refuses new reports (whenFull: drop-newest)');
      return;
    }
    const seq = this.nextSeq++;
    this.queued++;
    this.bytes += bytes;
    if (this.options.coalesce) {
      this.open.set(key, { seq, content });
      this.openKeys.set(seq, key);
    }
    this.store.queue(() => this.statements.insert.run(seq, resource, text));
    this.trackStaged(seq, bytes);
  }

  /**
   * Drops the oldest reports not in flight until `bytes` fit: committed ones first, then those
   * staged in the batch not yet committed. False when they cannot fit, or the policy is to drop
   * the newest instead.
   */
  private makeRoom(bytes: number): boolean {
    if (this.options.whenFull === 'drop-newest') return false;
    const sending = new Set([...this.inFlight.values()].map((f) => f.seq));
    const fits = () => this.bytes + bytes <= this.options.maxBytes;
    let after = 0;
    let dropped = 0;
    const remove = (seq: number, size: number) => {
      this.dropping.add(seq);
      // One the cloud never answered is as old as any: it makes room too.
      this.unconfirmed.delete(this.msgId(seq));
      this.bytes -= size;
      this.queued--;
      dropped++;
      this.close(seq);
      this.store.queue(() => this.statements.delete.run(seq));
      this.store.afterCommit(
        () => this.dropping.delete(seq),
        () => this.dropping.delete(seq),
      );
    };
    while (!fits()) {
      const rows = (this.statements.oldest.all(after) as Array<{ seq: number; size: number }>).filter((row) => !this.deleting.has(row.seq));
      if (rows.length === 0) break;
      for (const row of rows) {
        after = row.seq;
        if (sending.has(row.seq) || this.dropping.has(row.seq)) continue;
        remove(row.seq, row.size);
        if (fits()) break;
      }
    }
    while (!fits() && this.staged.length > 0) {
      const row = this.staged.shift()!;
      remove(row.seq, row.size);
    }
    if (dropped > 0) this.drop(dropped, 'the queue is full: oldest reports dropped (whenFull: drop-oldest)');
    return fits();
  }

  /** Until the batch commits, a staged row is invisible to queries: kept here for makeRoom. */
  private trackStaged(seq: number, size: number): void {
    if (this.staged.length === 0) {
      this.store.afterCommit(
        () => (this.staged = []),
        () => (this.staged = []),
      );
    }
    this.staged.push({ seq, size });
  }

  private drop(count: number, why: string): void {
    // Once per thousand: a long outage on a full queue must not flood the log.
    if (Math.floor(this.dropped / 1000) !== Math.floor((this.dropped + count) / 1000) || this.dropped === 0) {
      this.log.warn({ dropped: this.dropped + count, maxBytes: this.options.maxBytes }, why);
    }
    this.dropped += count;
  }

  private msgId(seq: number): string {
    return `${this.id}-${seq}`;
  }

  /** The next reports to send on this connection, in order; each is in flight until answered, overdue or the connection ends. */
  take(limit: number, now = Date.now()): Report[] {
    const rows = this.statements.next.all(this.cursor, limit) as Array<{ seq: number; resource: string; content: string }>;
    const reports: Report[] = [];
    for (const row of rows) {
      this.cursor = row.seq;
      if (this.deleting.has(row.seq) || this.dropping.has(row.seq)) continue;
      // The row may not have the latest merge committed yet; from now on it is closed to merges.
      const open = this.close(row.seq);
      const content = open ? JSON.stringify(open.content) : row.content;
      const msgId = this.msgId(row.seq);
      this.inFlight.set(msgId, { seq: row.seq, size: size(row.resource, content), sentAt: now });
      reports.push({ seq: row.seq, msgId, resource: row.resource, content });
    }
    return reports;
  }

  /**
   * Reports to send again now, oldest first, at most `limit`: those in flight for `resendMs` leave
   * the window for good, and each unanswered one is due again `resendMs` after its last send.
   */
  overdue(resendMs: number, limit: number, now = Date.now()): Report[] {
    for (const [msgId, sent] of this.inFlight) {
      if (now - sent.sentAt < resendMs) continue;
      this.inFlight.delete(msgId);
      this.unconfirmed.set(msgId, sent);
    }
    const due = [...this.unconfirmed].filter(([, sent]) => now - sent.sentAt >= resendMs).sort(([, a], [, b]) => a.seq - b.seq);
    const reports: Report[] = [];
    for (const [msgId, sent] of due.slice(0, limit)) {
      const row = this.statements.one.get(sent.seq) as { resource: string; content: string } | undefined;
      if (!row) {
        this.unconfirmed.delete(msgId);
        continue;
      }
      sent.sentAt = now;
      this.resent++;
      reports.push({ seq: sent.seq, msgId, resource: row.resource, content: row.content });
    }
    return reports;
  }

  /** The cloud answered a report: it is done. False for a message id that is neither in flight nor unconfirmed. */
  answered(msgId: string): boolean {
    const sent = this.inFlight.get(msgId) ?? this.unconfirmed.get(msgId);
    if (!sent) return false;
    this.inFlight.delete(msgId);
    this.unconfirmed.delete(msgId);
    this.queued--;
    this.bytes -= sent.size;
    this.deleting.add(sent.seq);
    this.store.queue(() => this.statements.delete.run(sent.seq));
    this.store.afterCommit(
      () => this.deleting.delete(sent.seq),
      () => this.deleting.delete(sent.seq),
    );
    return true;
  }

  /** The report `seq` takes no more merges; returns its open content, if it had any. */
  private close(seq: number): Open | undefined {
    const key = this.openKeys.get(seq);
    if (key === undefined) return undefined;
    this.openKeys.delete(seq);
    const open = this.open.get(key);
    this.open.delete(key);
    return open;
  }

  /** The connection ended: what was in flight or unconfirmed is sent again, in order, on the next one. */
  rewind(): void {
    this.inFlight.clear();
    this.unconfirmed.clear();
    this.cursor = 0;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  stats(): OutboxStats {
    return {
      queued: this.queued,
      bytes: this.bytes,
      inFlight: this.inFlight.size,
      unconfirmed: this.unconfirmed.size,
      resent: this.resent,
      dropped: this.dropped,
      coalesced: this.coalesced,
    };
  }
}
