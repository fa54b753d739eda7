/**
 * A damaged database, as a gateway's storage damages it: a twin.db of garbage, truncated, with
 * its header overwritten, or with one page overwritten, before the start; and a page going bad
 * while the agent runs. Each through the real agent (the CLI as a child process) on a twin.db
 * the agent wrote itself: it starts, moves the damaged file aside, rebuilds the twin from the
 * manifests and says `degraded` on /healthz; at run time the device whose rows sit on the bad
 * page goes unhealthy, logged once, while the others keep writing. The workloads' database,
 * opened through the same engine, gets the same start check.
 */
import BetterSqlite3 from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, cpSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail, TwinView } from '../../src/twin/routes.js';
import { WorkloadStore } from '../../src/workloads/store.js';
import { spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from '../support/agent.js';

const DEVICE = 'default/sensor-01';
const OTHER = 'plant-a/sensor-02';
/** Reported values per device while seeding: with the default history of 100, each device's history fills a page of its own. */
const SEEDED_REPORTS = 250;
/** Each twin property's history rows are keyed from `twin id × HISTORY_STRIDE` (src/twin/store.ts). */
const HISTORY_STRIDE = 1 << 14;

const dirs: string[] = [];
const agents: AgentProcess[] = [];

async function start(data: string): Promise<AgentProcess> {
  const agent = await spawnAgent(['--data', data, '--profiles', TEST_PROFILES]);
  agents.push(agent);
  return agent;
}

async function stop(agent: AgentProcess): Promise<void> {
  agent.child.kill('SIGTERM');
  expect(await agent.exited).toBe(0);
}

function put(agent: AgentProcess, path: string, body: unknown): Promise<Response> {
  return agent.api(path, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

async function health(agent: AgentProcess): Promise<{ status: string; reason?: string }> {
  return (await fetch(`${agent.apiUrl}/healthz`)).json() as Promise<{ status: string; reason?: string }>;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const movedAside = (data: string) => readdirSync(data).filter((name) => /^twin\.db\.damaged-\d{8}T\d{6}Z$/.test(name));

/** Overwrites page `pageno` (numbered from 1, as SQLite does) of `file` with `bytes` (garbage by default); returns what was there. */
function damagePage(file: string, pageno: number, pageSize: number, bytes: Buffer = randomBytes(pageSize)): Buffer {
  const fd = openSync(file, 'r+');
  try {
    const before = Buffer.alloc(pageSize);
    readSync(fd, before, 0, pageSize, (pageno - 1) * pageSize);
    writeSync(fd, bytes, 0, pageSize, (pageno - 1) * pageSize);
    return before;
  } finally {
    closeSync(fd);
  }
}

/**
 * The history page the next reported value of `device`'s `key` is written to, and the twin ids
 * of the rows on it (read from the file of a stopped agent).
 */
function nextHistoryPage(file: string, device: string, key: string): { pageno: number; pageSize: number; twinIds: Set<number> } {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const twin = db.prepare('SELECT id, history_seq FROM twin WHERE device_id = ? AND key = ?').get(device, key) as { id: number; history_seq: number };
    const rowid = twin.id * HISTORY_STRIDE + ((twin.history_seq + 1) % 100);
    const ids = (db.prepare('SELECT id FROM twin_history ORDER BY id').all() as Array<{ id: number }>).map((row) => row.id);
    // Leaves in tree order hold the rows in key order: the n-th leaf holds the next `ncell` ids.
    const leaves = db.prepare("SELECT pageno, ncell FROM dbstat WHERE name = 'twin_history' AND pagetype = 'leaf' ORDER BY path").all() as Array<{ pageno: number; ncell: number }>;
    let first = 0;
    for (const leaf of leaves) {
      const rows = ids.slice(first, first + leaf.ncell);
      first += leaf.ncell;
      if (rows.includes(rowid)) return { pageno: leaf.pageno, pageSize: db.pragma('page_size', { simple: true }) as number, twinIds: new Set(rows.map((id) => Math.floor(id / HISTORY_STRIDE))) };
    }
    throw new Error(`no history page holds row ${rowid}`);
  } finally {
    db.close();
  }
}

describe('a damaged twin.db', () => {
  let seeded: string;
  beforeAll(async () => {
    seeded = tempDir();
    dirs.push(seeded);
    const agent = await start(seeded);
    // Set through the API over the manifest's seed ("OFF"): a twin rebuilt from the manifests has "OFF" again.
    expect((await put(agent, `/api/v1/devices/${DEVICE}/twin/desired`, { switch: 'ON' })).status).toBe(200);
    for (let i = 0; i < SEEDED_REPORTS; i++) {
      for (const device of [DEVICE, OTHER]) expect((await put(agent, `/api/v1/devices/${device}/twin/reported`, { temperature: String(i) })).status).toBe(200);
    }
    await stop(agent);
  });

  afterAll(() => {
    for (const agent of agents) agent.child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A copy of the seeded data dir whose twin.db `damage` spoils. */
  function damagedCopy(damage: (file: string) => void): { data: string; damagedSha: string } {
    const data = tempDir();
    dirs.push(data);
    cpSync(seeded, data, { recursive: true });
    const file = join(data, 'twin.db');
    damage(file);
    return { data, damagedSha: sha256(file) };
  }

  const cases: Array<[string, (file: string) => void]> = [
    ['garbage', (file) => writeFileSync(file, randomBytes(statSync(file).size))],
    ['truncated', (file) => truncateSync(file, Math.floor(statSync(file).size / 2))],
    ['a damaged header', (file) => damagePage(file, 1, 100)],
    [
      'a damaged page (one the agent reads only when it writes there)',
      (file) => {
        const page = nextHistoryPage(file, DEVICE, 'temperature');
        damagePage(file, page.pageno, page.pageSize);
      },
    ],
  ];

  it.each(cases)('%s: starts, moves it aside, rebuilds the twin from the manifests, says degraded; the next start is clean', async (_, damage) => {
    const { data, damagedSha } = damagedCopy(damage);
    const agent = await start(data);

    const aside = movedAside(data);
    expect(aside).toHaveLength(1);
    expect(sha256(join(data, aside[0]!))).toBe(damagedSha);
    const degraded = await health(agent);
    expect(degraded.status).toBe('degraded');
    expect(degraded.reason).toContain(`twin.db was damaged (`);
    expect(degraded.reason).toContain(`moved aside to ${aside[0]}`);
    const twin = (await (await agent.api(`/api/v1/devices/${DEVICE}/twin`)).json()) as TwinView;
    expect(twin.switch?.expected?.value).toBe('OFF');
    expect((await put(agent, `/api/v1/devices/${DEVICE}/twin/desired`, { switch: 'ON' })).status).toBe(200);
    await stop(agent);

    const again = await start(data);
    expect(await health(again)).toMatchObject({ status: 'ok' });
    expect(movedAside(data)).toEqual(aside);
    expect(((await (await again.api(`/api/v1/devices/${DEVICE}/twin`)).json()) as TwinView).switch?.expected?.value).toBe('ON');
    await stop(again);
  });

  it('at run time: the device whose page went bad turns unhealthy with the storage reason, logged once, the others keep writing; back once the page reads again', async () => {
    const data = tempDir();
    dirs.push(data);
    cpSync(seeded, data, { recursive: true });
    const file = join(data, 'twin.db');
    const page = nextHistoryPage(file, DEVICE, 'temperature');
    const [deviceTwinId] = page.twinIds;
    expect([...page.twinIds]).toEqual([deviceTwinId]);
    expect(nextHistoryPage(file, OTHER, 'temperature').pageno).not.toBe(page.pageno);

    const agent = await start(data);
    expect(await health(agent)).toMatchObject({ status: 'ok' });
    expect((await put(agent, `/api/v1/devices/${DEVICE}/state`, { state: 'online' })).status).toBe(200);
    const lines: string[] = [];
    createInterface({ input: agent.child.stdout! }).on('line', (line) => lines.push(line));
    const sound = damagePage(file, page.pageno, page.pageSize);

    const answers: Array<{ status: number; reason: string }> = [];
    for (let i = 0; i < 100; i++) {
      const response = await put(agent, `/api/v1/devices/${DEVICE}/twin/reported`, { temperature: String(1000 + i) });
      answers.push({ status: response.status, reason: ((await response.json()) as { reason?: string }).reason ?? '' });
    }
    expect(answers.filter((a) => a.status !== 500 || !a.reason.startsWith('storage: '))).toEqual([]);
    for (let i = 0; i < 10; i++) expect((await put(agent, `/api/v1/devices/${OTHER}/twin/reported`, { temperature: String(i) })).status).toBe(200);

    const device = (await (await agent.api(`/api/v1/devices/${DEVICE}`)).json()) as DeviceDetail;
    expect(device.state).toBe('unhealthy');
    expect(device.reason).toMatch(/^storage: /);
    const other = (await (await agent.api(`/api/v1/devices/${OTHER}`)).json()) as DeviceDetail;
    expect(other.reason ?? '').not.toMatch(/^storage: /);
    const degraded = await health(agent);
    expect(degraded.status).toBe('degraded');
    expect(degraded.reason).toMatch(/commits failing since .*: storage: /);

    // A bad read the medium does not repeat (an SD card's retried sector): the page reads sound again.
    damagePage(file, page.pageno, page.pageSize, sound);
    for (let i = 0; i < 3; i++) expect((await put(agent, `/api/v1/devices/${DEVICE}/twin/reported`, { temperature: String(2000 + i) })).status).toBe(200);
    const back = (await (await agent.api(`/api/v1/devices/${DEVICE}`)).json()) as DeviceDetail;
    expect(back.state).toBe('online');
    expect(back.reason).toBeUndefined();

    const entries = lines.map((line) => JSON.parse(line) as { level: string; msg: string; device?: string });
    expect(entries.filter((entry) => entry.level !== 'info').map((entry) => entry.msg).sort()).toEqual(['database commits failing', 'device writes keep failing: unhealthy']);
    expect(entries.filter((entry) => entry.msg.startsWith('device writes')).map((entry) => [entry.device, entry.msg])).toEqual([
      [DEVICE, 'device writes keep failing: unhealthy'],
      [DEVICE, 'device writes commit again'],
    ]);
    await stop(agent);
  });
});

describe('a damaged workloads.db', () => {
  const data = tempDir();
  afterAll(() => rmSync(data, { recursive: true, force: true }));

  it('is moved aside and replaced by an empty one, as twin.db is: it is opened through the same engine', () => {
    const file = join(data, 'workloads.db');
    writeFileSync(file, randomBytes(8192));
    const store = new WorkloadStore(file, 200);
    expect(store.list()).toEqual([]);
    store.close();
    expect(readdirSync(data).filter((name) => name.startsWith('workloads.db.damaged-'))).toHaveLength(1);
  });
});
