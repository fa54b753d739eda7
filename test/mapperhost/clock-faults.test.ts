/**
 * Wall-clock steps (issue 15): an NTP correction on a gateway without a real-time clock steps
 * `Date` by hours, and collect and report cycles, which run on monotonic time, keep their
 * cadence. The real agent in this process with the demo profiles (the virtual counter, read every
 * second), and a device runner over a real twin (SQLite) whose device pushes a value every 50 ms,
 * reported at most once per 1 s reportCycle. Only `Date` is faked (vitest's fake timers), kept
 * at real time plus an offset: stepping it by ±1 h leaves timers and performance.now() alone, as
 * an NTP step does.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { Database } from '../../src/db/database.js';
import type { Device, DeviceModel } from '../../src/devices/model.js';
import { createLogger } from '../../src/log.js';
import type { Mapper } from '../../src/mapperhost/contract.js';
import { DeviceRunner } from '../../src/mapperhost/runner.js';
import { TransportPool } from '../../src/mapperhost/transports.js';
import type { DeviceDetail } from '../../src/twin/routes.js';
import { TwinStore } from '../../src/twin/store.js';
import { Twins } from '../../src/twin/twins.js';
import { timedOut, withTimeout } from '../../src/timeout.js';
import { DEMO_PROFILES, startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { sleep, waitFor } from '../support/wait.js';

const HOUR_MS = 3_600_000;
const CYCLE_MS = 1000;
const WINDOW_MS = 4000;
/** The wall clock untouched, then stepped forward an hour, then back an hour (to the real time), in this order. */
const STEPS = [
  ['with the wall clock untouched', 0],
  ['after the wall clock stepped forward 1 h', HOUR_MS],
  ['after the wall clock stepped back 1 h', -HOUR_MS],
] as const;

/**
 * `Date` as after NTP steps: real time plus the steps so far, running at the real rate. (Fake
 * timers' own `shouldAdvanceTime` adds a fixed 20 ms per interval that comes late, so its `Date`
 * runs slow, which is a fault of its own.)
 */
class SteppedWallClock {
  private offsetMs = 0;
  private follower?: NodeJS.Timeout;

  start(): void {
    vi.useFakeTimers({ toFake: ['Date'] });
    this.follow();
    this.follower = setInterval(() => this.follow(), 1);
  }

  step(ms: number): void {
    this.offsetMs += ms;
    this.follow();
  }

  stop(): void {
    clearInterval(this.follower);
    vi.useRealTimers();
  }

  private follow(): void {
    vi.setSystemTime(performance.timeOrigin + performance.now() + this.offsetMs);
  }
}

/** Reports seen so far, and the next one: a step taken just after a report finds no report timer pending. */
class Reports {
  count = 0;
  private readonly waiting: Array<() => void> = [];

  seen(): void {
    this.count++;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  next(): Promise<void> {
    return withTimeout(new Promise((resolve) => this.waiting.push(resolve)), 2 * CYCLE_MS, timedOut('waiting for a report', 2 * CYCLE_MS));
  }
}

/** One report per cycle over the window, give or take one for where the window falls. */
function expectCadence(reports: number): void {
  expect(reports, `reports in ${WINDOW_MS} ms at one per ${CYCLE_MS} ms`).toBeGreaterThanOrEqual(WINDOW_MS / CYCLE_MS - 1);
  expect(reports, `reports in ${WINDOW_MS} ms at one per ${CYCLE_MS} ms`).toBeLessThanOrEqual(WINDOW_MS / CYCLE_MS + 1);
}

describe('collect cycles of the agent (demo counter, read every 1 s) across wall-clock steps', () => {
  const COUNTER = 'default/counter-01';
  const clock = new SteppedWallClock();
  let agent: TestAgent;
  const reports = new Reports();
  let removeListener: (() => void) | undefined;

  async function count(): Promise<DeviceDetail> {
    const response = await agent.api(`/api/v1/devices/${COUNTER}`);
    expect(response.status).toBe(200);
    return (await response.json()) as DeviceDetail;
  }

  beforeAll(async () => {
    agent = await startTestAgent({ profiles: [DEMO_PROFILES] });
    removeListener = agent.agent.twins.onChange((change) => {
      if (change.origin === 'mapper' && change.deviceId === COUNTER && 'count' in change.result) reports.seen();
    });
    await waitFor('the counter online with a count', async () => {
      const d = await count();
      return d.state === 'online' && d.twin.count?.actual !== undefined;
    });
    clock.start();
  });

  afterAll(async () => {
    clock.stop();
    removeListener?.();
    await agent?.stop();
  });

  it.each(STEPS)('reports every ~1 s and stays online with fresh values %s', async (_, stepMs) => {
    // Just after a report: no report timer from before the step is pending to carry the cadence over it.
    await reports.next();
    clock.step(stepMs);
    const [reportsBefore, countBefore] = [reports.count, Number((await count()).twin.count?.actual?.value)];
    await sleep(WINDOW_MS);
    expectCadence(reports.count - reportsBefore);
    const after = await count();
    expect(after.state).toBe('online');
    expect(Number(after.twin.count?.actual?.value)).toBeGreaterThan(countBefore);
  });
});

describe('pushed values throttled to their reportCycle (1 s, pushed every 50 ms) across wall-clock steps', () => {
  const ID = 'default/pushing-01';
  const dir = tempDir('clock-faults-');
  const clock = new SteppedWallClock();
  let db: Database;
  let twins: Twins;
  let runner: DeviceRunner;
  const reports = new Reports();

  /** A device that sends a new value every 50 ms on its own, as a BLE notification or advertisement does; reads give the latest. */
  const pushing: Mapper = {
    protocols: ['pushing'],
    validate: () => [],
    connect: (_device, _model, context) => {
      let level = 0;
      const timer = setInterval(() => context.push('level', ++level), 50);
      return Promise.resolve({
        read: () => Promise.resolve(level),
        write: () => Promise.resolve(),
        close: () => Promise.resolve(clearInterval(timer)),
      });
    },
  };
  const model: DeviceModel = { id: 'default/pushing', namespace: 'default', name: 'pushing', apiVersion: 'devices.kubeedge.io/v1beta1', properties: [{ name: 'level', type: 'int', accessMode: 'ReadOnly' }] };
  const device: Device = {
    id: ID,
    namespace: 'default',
    name: 'pushing-01',
    apiVersion: 'devices.kubeedge.io/v1beta1',
    modelId: model.id,
    labels: {},
    protocol: { name: 'pushing', config: {} },
    // Read once a minute: what is reported within a window comes from the pushes.
    properties: [{ name: 'level', visitor: {}, collectCycleMs: 60_000, reportCycleMs: CYCLE_MS, reportToCloud: false }],
    reported: {},
    fields: { protocol: 'spec.protocol.configData', properties: 'spec.properties', visitors: {} },
  };

  beforeAll(async () => {
    db = new Database(join(dir, 'twin.db'));
    twins = new Twins(new TwinStore(db, 5), (error) => expect.unreachable(String(error)), resolveConfig({}).twin);
    twins.upsertDevice({ id: ID, namespace: 'default', name: 'pushing-01', managed: true, twins: { level: { type: 'int' } } });
    twins.onChange((change) => {
      if (change.origin === 'mapper' && 'level' in change.result) reports.seen();
    });
    runner = new DeviceRunner(device, model, pushing, twins, createLogger('silent'), '', new TransportPool());
    runner.start();
    await waitFor('the device online with a level', () => twins.get(ID)?.state === 'online' && twins.get(ID)?.twin.get('level')?.actual !== undefined);
    clock.start();
  });

  afterAll(async () => {
    clock.stop();
    await runner?.stop();
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(STEPS)('reports every ~1 s, the latest value, and stays online %s', async (_, stepMs) => {
    // Just after a report: no report timer from before the step is pending to carry the cadence over it.
    await reports.next();
    clock.step(stepMs);
    const [reportsBefore, levelBefore] = [reports.count, Number(twins.get(ID)?.twin.get('level')?.actual?.value)];
    await sleep(WINDOW_MS);
    expectCadence(reports.count - reportsBefore);
    expect(twins.get(ID)?.state).toBe('online');
    // Twenty pushes a second, one report: the level reported moved on by about twenty per report.
    expect(Number(twins.get(ID)?.twin.get('level')?.actual?.value)).toBeGreaterThan(levelBefore + 40);
  });
});
