/**
 * How the outbox stores reports, over a real SQLite file: compact rows (bytes on disk per queued
 * single-property update, from SQLite's page counts), what the quota counts against what is on
 * disk, event ids derived from message ids, seqs never given twice, damaged rows, and outbox rows
 * written by the previous schema migrated and sent as they were.
 */
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudConfig } from '../../src/cloud/config.js';
import { Outbox } from '../../src/cloud/outbox.js';
import { cloudMigrations } from '../../src/cloud/tables.js';
import { stageReports } from '../../src/cloud/uplink.js';
import { stateDialect } from '../../src/cloud/versions.js';
import { resolveConfig } from '../../src/config.js';
import { Database } from '../../src/db/database.js';
import { createLogger } from '../../src/log.js';
import { TwinStore } from '../../src/twin/store.js';
import { Twins } from '../../src/twin/twins.js';
import { tempDir } from '../support/agent.js';

const log = createLogger('silent');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
let file: string;
let store: Database;
let twins: Twins;
let outbox: Outbox;

function open(queue: Partial<CloudConfig['queue']> = {}): void {
  store = new Database(file);
  store.migrate(cloudMigrations);
  twins = new Twins(
    new TwinStore(store, 10),
    (error) => {
      throw error;
    },
    resolveConfig({}).twin,
  );
  outbox = new Outbox(store, { coalesce: false, maxBytes: 256 * 1024 * 1024, whenFull: 'drop-oldest', ...queue }, log);
  stageReports(twins, outbox, () => true, stateDialect('1.23'));
  twins.upsertDevice({
    id: 'default/meter',
    namespace: 'default',
    name: 'meter',
    managed: true,
    twins: { ...Object.fromEntries(Array.from({ length: 10 }, (_, p) => [`p${p}`, { type: 'int' }])), label: { type: 'string' } },
  });
}

/** Bytes in pages SQLite uses (not free), WAL included: what the file holds, whatever it reuses. */
function usedBytes(): number {
  const [pages, free, size] = ['page_count', 'freelist_count', 'page_size'].map((pragma) => (store.prepare(`PRAGMA ${pragma}`).get() as Record<string, number>)[pragma]!);
  return (pages! - free!) * size!;
}

type Content = { event_id: string; timestamp: number; twin: Record<string, { actual?: { value: string; metadata: { timestamp: number } }; actual_version?: { cloud: number; edge: number }; optional?: boolean; metadata?: { type: string } }> };
const contents = (take = 100_000) => outbox.take(take).map((r) => JSON.parse(r.content) as Content);

beforeEach(() => {
  file = join(tempDir('outbox-storage-'), 'twin.db');
});

afterEach(() => {
  store.close();
});

describe('outbox storage', () => {
  it('stores a single-property update in at most 64 bytes on disk, and counts about what it stores', async () => {
    open();
    // Warm up: the twin's own rows (history, values) reach their steady size first.
    for (let i = 0; i < 200; i++) twins.report('default/meter', { p0: String(i) });
    await store.flushed();
    outbox.take(1000).forEach((r) => outbox.answered(r.msgId));
    await store.flushed();
    outbox.rewind();
    const before = usedBytes();
    const counted = outbox.stats().bytes;
    const updates = 20_000;
    for (let i = 0; i < updates; i++) {
      twins.report('default/meter', { [`p${i % 10}`]: String(1000 + (i % 9000)) });
      if (i % 1000 === 999) await store.flushed();
    }
    await store.flushed();
    const onDisk = (usedBytes() - before) / updates;
    const quota = (outbox.stats().bytes - counted) / updates;
    expect(onDisk).toBeLessThanOrEqual(64);
    // The quota counts rows as SQLite lays them out; pages add their headers and unused ends.
    expect(quota).toBeGreaterThan(onDisk * 0.9);
    expect(quota).toBeLessThanOrEqual(onDisk * 1.1);
  });

  it('sends the content the twin gave, with an event id derived from the message id, the same at every send', async () => {
    open();
    twins.report('default/meter', { label: 'a,value:with/marks@1#2' });
    twins.update('default/meter', { p2: { actual: { value: '7' } } }, 'mapper', 'from-the-device');
    twins.update('default/meter', { p3: { expected: { value: '9' } } }, 'api');
    twins.update('default/meter', { extra: { actual: { value: 'x' } } }, 'api');
    twins.update('default/meter', { extra: null }, 'api');
    await store.flushed();
    const first = outbox.take(10).filter((_, i) => i !== 3);
    const device = twins.get('default/meter')!;
    const [p1, p2, p3, p4] = first.map((r) => JSON.parse(r.content) as Content);
    expect(p1!.event_id).toMatch(UUID);
    expect(p1!.twin.label).toEqual({
      actual: { value: 'a,value:with/marks@1#2', metadata: { timestamp: device.twin.get('label')!.actual!.timestamp } },
      optional: true,
      metadata: { type: 'string' },
      actual_version: { cloud: 0, edge: 1 },
    });
    expect(p2!.event_id).toBe('from-the-device');
    expect(Object.keys(p3!.twin.p3!)).toEqual(['expected', 'actual', 'optional', 'metadata', 'expected_version', 'actual_version'].filter((k) => k in p3!.twin.p3!));
    expect(p4!.twin.extra).toMatchObject({ metadata: { type: 'deleted' } });
    outbox.rewind();
    expect(outbox.take(10).filter((_, i) => i !== 3)).toEqual(first);
    store.close();
    open();
    expect(outbox.take(10).filter((_, i) => i !== 3)).toEqual(first);
  });

  it('never gives a seq twice, also once the newest reports are answered before a restart', async () => {
    open();
    for (let i = 0; i < 3; i++) twins.report('default/meter', { p0: String(i) });
    await store.flushed();
    const sent = outbox.take(10);
    for (const report of sent) outbox.answered(report.msgId);
    await store.flushed();
    store.close();
    open();
    twins.report('default/meter', { p0: '99' });
    await store.flushed();
    const [next] = outbox.take(10);
    expect(sent.map((r) => r.msgId)).not.toContain(next!.msgId);
    expect(next!.seq).toBe(sent.at(-1)!.seq + 1);
  });

  it('drops a row it cannot read instead of stopping at it', async () => {
    open();
    twins.report('default/meter', { p0: '1' });
    await store.flushed();
    store.transaction(() => store.prepare("INSERT INTO cloud_outbox (seq, resource, content) VALUES (1000, '', X'01ff')").run());
    store.close();
    open();
    twins.report('default/meter', { p0: '2' });
    await store.flushed();
    expect(contents().map((c) => c.twin.p0!.actual!.value)).toEqual(['1', '2']);
    expect(outbox.stats()).toMatchObject({ dropped: 1, queued: 2 });
  });
});

describe('outbox rows of the previous schema', () => {
  it('are migrated as they were: same seqs, message ids and contents, new reports after them', async () => {
    const before = new Database(file);
    before.migrate({ owner: 'cloud', steps: cloudMigrations.steps.slice(0, 2) });
    before.close();
    const old = new BetterSqlite3(file);
    const legacy = { event_id: 'e-7', timestamp: 1_700_000_000_000, twin: { power: { actual: { value: '3', metadata: { timestamp: 1_700_000_000_000 } }, actual_version: { cloud: 0, edge: 3 } } } };
    old.prepare('INSERT INTO cloud_outbox (seq, resource, content) VALUES (?, ?, ?)').run(7, 'device/default/meter/twin/edge_updated', JSON.stringify(legacy));
    old.prepare('INSERT INTO cloud_outbox (seq, resource, content) VALUES (?, ?, ?)').run(8, 'device/default/meter/state/update', '{"event_id":"e-8","timestamp":1,"device":{"name":"meter","state":"online"}}');
    old.prepare("INSERT INTO cloud_meta (key, value) VALUES ('outbox_id', 'old-outbox')").run();
    old.close();

    open();
    expect(outbox.stats().queued).toBe(2);
    twins.report('default/meter', { p0: '1' });
    await store.flushed();
    const reports = outbox.take(10);
    expect(reports.map((r) => [r.seq, r.msgId, r.resource])).toEqual([
      [7, 'old-outbox-7', 'device/default/meter/twin/edge_updated'],
      [8, 'old-outbox-8', 'device/default/meter/state/update'],
      [9, 'old-outbox-9', 'device/default/meter/twin/edge_updated'],
    ]);
    expect(JSON.parse(reports[0]!.content)).toEqual(legacy);
    expect(JSON.parse(reports[1]!.content).event_id).toBe('e-8');
    for (const report of reports) outbox.answered(report.msgId);
    await store.flushed();
    expect(outbox.stats()).toMatchObject({ queued: 0, bytes: 0 });
  });
});
