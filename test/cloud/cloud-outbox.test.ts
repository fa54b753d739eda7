/**
 * The outbox of cloud reports over a real SQLite twin store: staged with the twin change that
 * causes it, in order, coalesced on request, bounded by its quota with the configured policy,
 * and still there after the store is closed and opened again.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudConfig } from '../../src/cloud/config.js';
import { Outbox } from '../../src/cloud/outbox.js';
import { stageReports } from '../../src/cloud/uplink.js';
import { stateDialect, type KubeEdgeVersion } from '../../src/cloud/versions.js';
import { createLogger } from '../../src/log.js';
import { cloudMigrations } from '../../src/cloud/tables.js';
import { resolveConfig } from '../../src/config.js';
import { Database } from '../../src/db/database.js';
import { TwinStore } from '../../src/twin/store.js';
import { Twins } from '../../src/twin/twins.js';
import { tempDir } from '../support/agent.js';

const log = createLogger('silent');
let file: string;
let store: Database;
let twins: Twins;
let outbox: Outbox;

function open(queue: Partial<CloudConfig['queue']> = {}, version: KubeEdgeVersion = '1.23'): void {
  store = new Database(file);
  store.migrate(cloudMigrations);
  twins = new Twins(
    new TwinStore(store, 10),
    (error) => {
      throw error;
    },
    resolveConfig({}).twin,
  );
  outbox = new Outbox(store, { coalesce: false, maxBytes: 1024 * 1024, whenFull: 'drop-oldest', ...queue }, log);
  stageReports(twins, outbox, (id, property) => id !== 'default/local' && property !== 'secret', stateDialect(version));
  for (const name of ['meter', 'local']) {
    twins.upsertDevice({ id: `default/${name}`, namespace: 'default', name, managed: true, twins: { power: { type: 'int' }, secret: { type: 'string' } } });
  }
}

const reported = (take = 1000) => outbox.take(take).map((r) => ({ resource: r.resource, ...(JSON.parse(r.content) as { twin?: Record<string, { actual?: { value: string }; actual_version?: { edge: number } }> }) }));

beforeEach(() => {
  file = join(tempDir('outbox-'), 'twin.db');
});

afterEach(() => {
  store.close();
});

describe('the cloud outbox', () => {
  it('queues every reported value in order, with its version, for the cloud devices and properties only', async () => {
    open();
    for (let i = 1; i <= 3; i++) twins.report('default/meter', { power: String(i), secret: 'x' });
    twins.report('default/local', { power: '9' });
    twins.setState('default/meter', 'online', 'mapper');
    twins.update('default/meter', { power: { expected: { value: '5' } } }, 'cloud');
    await store.flushed();
    const reports = reported();
    expect(reports.map((r) => r.resource)).toEqual([
      ...Array(3).fill('device/default/meter/twin/edge_updated'),
      'device/default/meter/state/update',
    ]);
    expect(reports.slice(0, 3).map((r) => [r.twin!.power!.actual!.value, r.twin!.power!.actual_version!.edge, Object.keys(r.twin!)])).toEqual([
      ['1', 1, ['power']],
      ['2', 2, ['power']],
      ['3', 3, ['power']],
    ]);
  });

  it('keeps reports across a restart, and sends unanswered ones again under the same message id', async () => {
    open();
    twins.report('default/meter', { power: '1' });
    twins.report('default/meter', { power: '2' });
    await store.flushed();
    const [first, second] = outbox.take(10);
    expect(outbox.answered(first!.msgId)).toBe(true);
    expect(outbox.answered('unknown')).toBe(false);
    await store.flushed();
    store.close();
    open();
    expect(outbox.stats()).toMatchObject({ queued: 1, inFlight: 0 });
    const [again] = outbox.take(10);
    expect(again).toMatchObject({ seq: second!.seq, msgId: second!.msgId });
    outbox.rewind();
    expect(outbox.take(10).map((r) => r.msgId)).toEqual([second!.msgId]);
  });

  it('coalesces unsent reports to the latest value per property when asked to', async () => {
    open({ coalesce: true });
    twins.report('default/meter', { power: '1' });
    await store.flushed();
    const [sending] = outbox.take(10);
    twins.report('default/meter', { power: '2' });
    twins.report('default/meter', { power: '3', secret: 'x' });
    twins.setState('default/meter', 'online', 'mapper');
    twins.setState('default/meter', 'offline', 'mapper');
    await store.flushed();
    expect(JSON.parse(sending!.content).twin.power.actual.value).toBe('1');
    const rest = reported();
    expect(rest.map((r) => r.resource)).toEqual(['device/default/meter/twin/edge_updated', 'device/default/meter/state/update']);
    expect(rest[0]!.twin!.power).toMatchObject({ actual: { value: '3' }, actual_version: { edge: 3 } });
    expect((rest[1] as unknown as { device: { state: string } }).device.state).toBe('offline');
    expect(outbox.stats().coalesced).toBe(2);
  });

  it('drops the oldest reports when the quota is reached (drop-oldest), counting them', async () => {
    open({ maxBytes: 2048 });
    for (let i = 1; i <= 200; i++) twins.report('default/meter', { power: String(i) });
    await store.flushed();
    const stats = outbox.stats();
    expect(stats.bytes).toBeLessThanOrEqual(2048);
    expect(stats.dropped).toBeGreaterThan(0);
    expect(stats.dropped).toBe(200 - stats.queued);
    const values = reported().map((r) => Number(r.twin!.power!.actual!.value));
    expect(values.at(-1)).toBe(200);
    expect(values).toEqual([...Array(values.length).keys()].map((i) => 201 - values.length + i));
  });

  it('refuses new reports when the quota is reached (drop-newest), keeping the old ones', async () => {
    open({ maxBytes: 2048, whenFull: 'drop-newest' });
    for (let i = 1; i <= 200; i++) twins.report('default/meter', { power: String(i) });
    await store.flushed();
    const values = reported().map((r) => Number(r.twin!.power!.actual!.value));
    expect(values[0]).toBe(1);
    expect(values).toEqual([...Array(values.length).keys()].map((i) => i + 1));
    expect(outbox.stats().dropped).toBeGreaterThan(0);
    expect(outbox.stats().dropped).toBe(200 - values.length);
  });
});

describe('reports the cloud does not answer', () => {
  it('are sent again after resendMs under the same id, leave the window, and are done once answered', async () => {
    open();
    for (let i = 1; i <= 3; i++) twins.report('default/meter', { power: String(i) });
    await store.flushed();
    const t0 = 1_000_000;
    const sent = outbox.take(10, t0);
    expect(outbox.stats()).toMatchObject({ inFlight: 3, unconfirmed: 0 });
    expect(outbox.answered(sent[1]!.msgId)).toBe(true);
    expect(outbox.overdue(1000, 10, t0 + 999)).toEqual([]);
    const again = outbox.overdue(1000, 10, t0 + 1000);
    expect(again.map((r) => [r.msgId, r.content])).toEqual([sent[0], sent[2]].map((r) => [r!.msgId, r!.content]));
    // Out of the window: the next reports go out although these two are still unanswered.
    expect(outbox.stats()).toMatchObject({ inFlight: 0, unconfirmed: 2, resent: 2 });
    expect(outbox.inFlightCount).toBe(0);
    twins.report('default/meter', { power: '4' });
    await store.flushed();
    expect(outbox.take(10, t0 + 1000).map((r) => JSON.parse(r.content).twin.power.actual.value)).toEqual(['4']);
    // Each is due again resendMs after its last send, not before.
    expect(outbox.overdue(1000, 10, t0 + 1500)).toEqual([]);
    expect(outbox.overdue(1000, 1, t0 + 2000).map((r) => r.msgId)).toEqual([sent[0]!.msgId]);
    expect(outbox.answered(sent[0]!.msgId)).toBe(true);
    expect(outbox.answered(sent[2]!.msgId)).toBe(true);
    await store.flushed();
    // Left: the fourth, unanswered since t0 + 1000, so by now out of the window too.
    expect(outbox.stats()).toMatchObject({ queued: 1, inFlight: 0, unconfirmed: 1 });
  });

  it('are dropped first when the quota is reached (drop-oldest), not kept at the cost of new ones', async () => {
    open({ maxBytes: 2048 });
    twins.report('default/meter', { power: '1' });
    await store.flushed();
    const [stuck] = outbox.take(10, 0);
    outbox.overdue(1000, 10, 1000);
    for (let i = 2; i <= 200; i++) twins.report('default/meter', { power: String(i) });
    await store.flushed();
    expect(outbox.stats().unconfirmed).toBe(0);
    expect(outbox.answered(stuck!.msgId)).toBe(false);
  });
});

describe('state reports by KubeEdge version', () => {
  const stateOf = () => {
    const state = outbox.take(100).find((r) => r.resource.endsWith('/state/update'))!;
    return (JSON.parse(state.content) as { device: Record<string, string> }).device;
  };

  it('1.19 and later: lastOnlineTime in RFC 3339 UTC, only while online or ok', async () => {
    open({}, '1.19');
    twins.setState('default/meter', 'online', 'mapper');
    await store.flushed();
    const device = stateOf();
    expect(Object.keys(device).sort()).toEqual(['lastOnlineTime', 'name', 'state']);
    expect(device.lastOnlineTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(Math.abs(Date.parse(device.lastOnlineTime!) - Date.now())).toBeLessThan(2000);
    twins.setState('default/meter', 'offline', 'mapper');
    await store.flushed();
    expect(stateOf()).toEqual({ name: 'meter', state: 'offline' });
  });

  it('1.18: lastOnlineTime with the local clock marked Z, as 1.18 wrote it', async () => {
    open({}, '1.18');
    twins.setState('default/meter', 'ok', 'mapper');
    await store.flushed();
    const stored = twins.get('default/meter')!.lastOnline;
    expect(stateOf()).toEqual({ name: 'meter', state: 'ok', lastOnlineTime: `${stored.replace(' ', 'T')}Z` });
  });

  it('1.16 and 1.17: last_online in local "2006-01-02 15:04:05", on every state change', async () => {
    open({}, '1.17');
    twins.setState('default/meter', 'offline', 'mapper');
    await store.flushed();
    const device = stateOf();
    expect(Object.keys(device).sort()).toEqual(['last_online', 'name', 'state']);
    expect(device.last_online).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
  });
});
