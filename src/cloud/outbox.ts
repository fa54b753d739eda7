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
 *
 * Reports are stored compact (report-codec.ts: ~30 bytes a single-property report, row included)
 * and the quota counts them as stored. Seqs are never given twice: the next one is kept in
 * `cloud_meta` with each batch, as answered reports at the end of the queue take theirs with them.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import type { Database } from '../db/database.js';
import { ByteFormatError } from './bytes.js';
import type { CloudConfig } from './config.js';
import { eventIdOf } from './event-id.js';
import { OutboxNames } from './outbox-names.js';
import { ReportCodec, STORED_SIZE_SQL, storedSize, type ReportContent, type StoredReport } from './report-codec.js';


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

/** A report's seq and the bytes its row takes; shared by the staged list and an open report, so a merge resizes both. */
interface Entry {
  seq: number;
  size: number;
}

/** The latest content of a report not yet sent, which newer values of the same key merge into, and its row as last encoded. */
interface Open {
  entry: Entry;
  content: ReportContent;
  row: StoredReport;
}

export type Merge = (older: ReportContent, newer: ReportContent) => ReportContent;

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
  private staged: Entry[] = [];
  /** Sent and not answered yet, by message id, in the window. */
  private readonly inFlight = new Map<string, Sent>();
  /** Sent and not answered within `resendMs`, by message id: out of the window, sent again from time to time. */
  private readonly unconfirmed = new Map<string, Sent>();
  private resent = 0;
  private readonly statements;
  /** The highest seq sent on the current connection. */
  private cursor = 0;
  private readonly names: OutboxNames;
  private readonly codec: ReportCodec;
  /** The next seq is to be saved with the current batch. */
  private savingSeq = false;

  constructor(
    private readonly store: Database,
    private readonly options: CloudConfig['queue'],
    private readonly log: Logger,
  ) {
    this.statements = {
      insert: store.prepare('INSERT INTO cloud_outbox (seq, resource, content) VALUES (?, ?, ?)'),
      update: store.prepare('UPDATE cloud_outbox SET resource = ?, content = ? WHERE seq = ?'),
      delete: store.prepare('DELETE FROM cloud_outbox WHERE seq = ?'),
      next: store.prepare('SELECT seq, resource, content FROM cloud_outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
      one: store.prepare('SELECT resource, content FROM cloud_outbox WHERE seq = ?'),
      oldest: store.prepare(`SELECT seq, ${STORED_SIZE_SQL} AS size FROM cloud_outbox WHERE seq > ? ORDER BY seq LIMIT 100`),
      head: store.prepare('SELECT seq, resource, content FROM cloud_outbox ORDER BY seq LIMIT 1'),
      meta: store.prepare('SELECT value FROM cloud_meta WHERE key = ?'),
      setMeta: store.prepare('INSERT OR REPLACE INTO cloud_meta (key, value) VALUES (?, ?)'),
    };
    const totals = store.prepare(`SELECT count(*) AS n, coalesce(sum(${STORED_SIZE_SQL}), 0) AS bytes, coalesce(max(seq), 0) AS last FROM cloud_outbox`).get() as {
      n: number;
      bytes: number;
      last: number;
    };
    this.queued = totals.n;
    this.bytes = totals.bytes;
    const saved = this.statements.meta.get('next_seq') as { value: string } | undefined;
    this.nextSeq = Math.max(totals.last + 1, Number(saved?.value ?? 0));
    const stored = this.statements.meta.get('outbox_id') as { value: string } | undefined;
    this.id = stored?.value ?? randomUUID();
    if (!stored) this.statements.setMeta.run('outbox_id', this.id);
    this.names = new OutboxNames(store);
    if (this.queued === 0) this.names.clear();
    this.codec = new ReportCodec(this.names);
  }

  /**
   * Queues a report in the store's current batch. With coalescing, a report with the `key` of one
   * not sent yet is merged into it (`merge(older, newer)`) instead of queued behind it.
   */
  stage(resource: string, content: ReportContent, key: string, merge: Merge): void {
    const open = this.options.coalesce ? this.open.get(key) : undefined;
    if (open) {
      const { entry } = open;
      open.content = merge(open.content, content);
      const row = this.encode(resource, open.content, entry.seq);
      const size = storedSize(row);
      this.bytes += size - entry.size;
      entry.size = size;
      open.row = row;
      this.coalesced++;
      this.store.queue(() => this.statements.update.run(row.resource, row.content, entry.seq));
      return;
    }
    // Encoded under the seq it would get: a JSON report holds its event id, derived from the seq.
    const seq = this.nextSeq;
    const row = this.encode(resource, content, seq);
    const size = storedSize(row);
    if (this.bytes + size > this.options.maxBytes && !this.makeRoom(size)) {
      this.drop(1, 'the queue is full and refuses new reports (whenFull: drop-newest)');
      return;
    }
    this.nextSeq++;
    this.saveNextSeq();
    this.queued++;
    this.bytes += size;
    const entry = { seq, size };
    if (this.options.coalesce) {
      this.open.set(key, { entry, content, row });
      this.openKeys.set(seq, key);
    }
    this.store.queue(() => this.statements.insert.run(seq, row.resource, row.content));
    this.trackStaged(entry);
  }

  private encode(resource: string, content: ReportContent, seq: number): StoredReport {
    return this.codec.encode(resource, content, () => eventIdOf(this.msgId(seq)));
  }

  /** Once a batch: the seqs given so far stay given, whatever is deleted before a restart. */
  private saveNextSeq(): void {
    if (this.savingSeq) return;
    this.savingSeq = true;
    this.store.queue(() => this.statements.setMeta.run('next_seq', String(this.nextSeq)));
    this.store.afterCommit(
      () => (this.savingSeq = false),
      () => (this.savingSeq = false),
    );
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
      const rows = (this.statements.oldest.all(after) as Entry[]).filter((row) => !this.deleting.has(row.seq));
      if (rows.length === 0) break;
      for (const row of rows) {
        after = row.seq;
        if (sending.has(row.seq) || this.dropping.has(row.seq)) continue;
        // A merge not committed yet has resized an open report: its size is the one counted.
        remove(row.seq, this.openEntry(row.seq)?.size ?? row.size);
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
  private trackStaged(entry: Entry): void {
    if (this.staged.length === 0) {
      this.store.afterCommit(
        () => (this.staged = []),
        () => (this.staged = []),
      );
    }
    this.staged.push(entry);
  }

  private openEntry(seq: number): Entry | undefined {
    const key = this.openKeys.get(seq);
    return key === undefined ? undefined : this.open.get(key)?.entry;
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
    const rows = this.statements.next.all(this.cursor, limit) as Array<StoredReport & { seq: number }>;
    const reports: Report[] = [];
    for (const stored of rows) {
      const { seq } = stored;
      this.cursor = seq;
      if (this.deleting.has(seq) || this.dropping.has(seq)) continue;
      // The row may not have the latest merge committed yet; from now on it is closed to merges.
      const row = this.close(seq)?.row ?? stored;
      const report = this.decode(seq, row);
      if (!report) continue;
      this.inFlight.set(report.msgId, { seq, size: storedSize(row), sentAt: now });
      reports.push(report);
    }
    return reports;
  }

  /** The report as sent; a row that cannot be read is dropped (logged), not left to stop the queue. */
  private decode(seq: number, row: StoredReport): Report | undefined {
    const msgId = this.msgId(seq);
    try {
      return { seq, msgId, ...this.codec.decode(row, () => eventIdOf(msgId)) };
    } catch (error) {
      if (!(error instanceof ByteFormatError)) throw error;
      this.log.error({ seq, reason: error.message }, 'a queued report cannot be read: dropped');
      this.unconfirmed.delete(msgId);
      this.queued--;
      this.bytes -= storedSize(row);
      this.dropped++;
      this.deleting.add(seq);
      this.store.queue(() => this.statements.delete.run(seq));
      this.store.afterCommit(
        () => this.deleting.delete(seq),
        () => this.deleting.delete(seq),
      );
      return undefined;
    }
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
      const row = this.statements.one.get(sent.seq) as StoredReport | undefined;
      const report = row && this.decode(sent.seq, row);
      if (!report) {
        this.unconfirmed.delete(msgId);
        continue;
      }
      sent.sentAt = now;
      this.resent++;
      reports.push(report);
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

  /** Read from the head row when asked (a status or a scrape), not tracked per report: 3.6 M reports would each carry a time. */
  oldestAgeMs(): number | undefined {
    const row = this.statements.head.get() as (StoredReport & { seq: number }) | undefined;
    const report = row && this.decode(row.seq, row);
    if (!report) return undefined;
    const timestamp = (JSON.parse(report.content) as { timestamp?: unknown }).timestamp;
    return typeof timestamp === 'number' ? Math.max(0, Date.now() - timestamp) : undefined;
  }
}
