/**
 * Files that only grew and processes that were not the agent's (issue 15, item 7): a workload's
 * serial console stays within `consoleMaxBytes` while the unikernel ticks, its tail still served;
 * its history within `historySize`; an agent ends only the QEMUs its own pidfiles name — not
 * another agent's on the same run dir, not a process that took a recorded pid — and does end the
 * one a killed run of it left. Real QEMU (TCG) runs the shipped unikernel, in-process through the
 * workloads module and under the agent as a child process killed with SIGKILL.
 */
import BetterSqlite3 from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { TelemetryModule } from '../../src/telemetry/index.js';
import { workloadsSection } from '../../src/workloads/config.js';
import { WorkloadsModule, type WorkloadDetail } from '../../src/workloads/index.js';
import { endLeftovers, recordStarted } from '../../src/workloads/qemu/pidfiles.js';
import { spawnAgent, tempDir } from '../support/agent.js';
import { freePort } from '../support/ports.js';
import { qemuUnder } from '../support/qemu.js';
import { sleep, waitFor } from '../support/wait.js';
import { serveRoutes, type ServedRoutes } from './serve-routes.js';
import { ensureImages, IMAGES } from '../support/images.js';
import { systemPaths } from '../../src/wifi/paths.js';

const TICK = /unikernel boot=([0-9a-f]{16}) tick=(\d+)/g;
const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const dirs: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

function newDir(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

/** A started workloads module on `dataDir` and `runDir`, its routes served. */
async function startModule(dataDir: string, runDir: string, workloads: Record<string, unknown>): Promise<{ module: WorkloadsModule; routes: ServedRoutes }> {
  const telemetry = new TelemetryModule({ wifi: { state: () => ({ status: 'disabled', radio: 'wlan0' }) }, log });
  const config = v.parse(workloadsSection, { enabled: true, images: [IMAGES], listen: { host: '127.0.0.1', port: 0 }, ...workloads });
  const module = new WorkloadsModule({ config, node: 'files-faults', dataDir, runDir, telemetry, paths: systemPaths, log });
  cleanups.push(() => module.stop());
  await module.start(new AbortController().signal);
  const routes = await serveRoutes(module.routes, log);
  cleanups.push(() => routes.close());
  return { module, routes };
}

const detail = async (routes: ServedRoutes, name: string) => (await routes.call<WorkloadDetail>('GET', `/api/v1/workloads/${name}`)).body;
const ticksIn = (console: string) => [...console.matchAll(TICK)].map((match) => Number(match[2]));
/** Whether `pid` is a live process (a zombie is not: the killed agent's orphans may be left unreaped). */
function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

beforeAll(() => {
  ensureImages();
}, 300_000);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => {
  for (const dir of dirs) {
    expect(qemuUnder(dir)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('bounded files', () => {
  it('keeps the console within consoleMaxBytes while the ticker runs, its newest lines served; the history within historySize', async () => {
    const dataDir = newDir('files-console-');
    const { routes } = await startModule(dataDir, join(dataDir, 'run'), {
      consoleMaxBytes: 512,
      historySize: 6,
      workloads: [{ name: 'ticker', image: 'unikernel-ticker', autostart: true }],
    });
    const file = join(dataDir, 'run', 'workloads', 'ticker.console');
    // ~61 bytes a tick: by tick 18 the guest wrote over twice the cap, so the file was cut at least twice.
    let largest = 0;
    await waitFor('tick 18', async () => {
      largest = Math.max(largest, statSync(file).size);
      return (ticksIn((await detail(routes, 'ticker')).console).at(-1) ?? 0) >= 18;
    }, { timeoutMs: 40_000, intervalMs: 50 });
    expect(largest).toBeLessThanOrEqual(512);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    // What is kept is the newest output, in order, with nothing missing: at least half the cap of it.
    const { console } = await detail(routes, 'ticker');
    expect(console.length).toBeLessThanOrEqual(512);
    const ticks = ticksIn(console);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks).toEqual(ticks.map((_, i) => ticks[0]! + i));
    expect(ticks.at(-1)).toBeGreaterThanOrEqual(18);

    // Pausing and resuming writes two events a time; only the newest six stay, in the database too.
    for (let i = 0; i < 5; i++) {
      await routes.call('POST', '/api/v1/workloads/ticker/pause');
      await routes.call('POST', '/api/v1/workloads/ticker/resume');
    }
    expect((await detail(routes, 'ticker')).history.map((event) => event.event)).toEqual(['resumed', 'paused', 'resumed', 'paused', 'resumed', 'paused']);
    const db = new BetterSqlite3(join(dataDir, 'workloads.db'), { readonly: true });
    try {
      expect(db.prepare("SELECT count(*) AS n FROM workload_history WHERE name = 'ticker'").get()).toEqual({ n: 6 });
    } finally {
      db.close();
    }
  }, 60_000);
});

describe('owned processes', () => {
  it('a second agent on the same run dir, another data dir, leaves the first one’s QEMU running', async () => {
    const runDir = newDir('files-shared-run-');
    const first = await startModule(newDir('files-first-'), runDir, { workloads: [{ name: 'ticker', image: 'unikernel-ticker', autostart: true }] });
    const { pid } = await detail(first.routes, 'ticker');
    expect(pid).toEqual(expect.any(Number));

    const second = await startModule(newDir('files-second-'), runDir, { workloads: [{ name: 'other', image: 'unikernel-ticker', autostart: true }] });
    expect((await detail(second.routes, 'other')).state).toBe('running');
    await sleep(500);
    expect(alive(pid!)).toBe(true);
    expect(await detail(first.routes, 'ticker')).toMatchObject({ state: 'running', pid });
  }, 60_000);

  it('ends a QEMU a killed run of the agent left, at its next start, and runs the workload again once', async () => {
    const data = newDir('files-killed-');
    const runDir = join(data, 'run');
    const config = join(data, 'agent.json');
    const workloads = { enabled: true, images: [IMAGES], listen: { host: '127.0.0.1', port: await freePort() }, workloads: [{ name: 'ticker', image: 'unikernel-ticker', autostart: true }] };
    writeFileSync(config, JSON.stringify({ workloads, runDir }));
    const start = async () => {
      const agent = await spawnAgent(['--config', config, '--data', data, '--profiles', newDir('files-profiles-')]);
      cleanups.push(async () => {
        agent.child.kill('SIGTERM');
        await agent.exited;
      });
      return agent;
    };

    const killed = await start();
    const { pid: leftover } = (await (await killed.api('/api/v1/workloads/ticker')).json()) as WorkloadDetail;
    killed.child.kill('SIGKILL');
    await killed.exited;
    // Should this test fail, the orphan goes anyway.
    cleanups.push(() => void (alive(leftover!) && process.kill(leftover!, 'SIGKILL')));
    await sleep(500);
    expect(alive(leftover!)).toBe(true);

    const again = await start();
    const { pid, state } = (await (await again.api('/api/v1/workloads/ticker')).json()) as WorkloadDetail;
    expect(state).toBe('running');
    expect(pid).not.toBe(leftover);
    expect(alive(leftover!)).toBe(false);
    expect(qemuUnder(join(runDir, 'workloads', 'ticker.qmp'))).toHaveLength(1);
  }, 60_000);

  it('ends only QEMU, and only the process the pidfile recorded: not another program, not a later process with that pid', async () => {
    const pidDir = join(newDir('files-pids-'), 'pids');
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    cleanups.push(() => void sleeper.kill('SIGKILL'));
    recordStarted(pidDir, 'not-qemu', sleeper.pid!);

    // A QEMU whose pidfile says it started at another time: the pid now names another process than the one recorded.
    const runDir = newDir('files-reused-run-');
    const { routes } = await startModule(newDir('files-reused-'), runDir, { workloads: [{ name: 'ticker', image: 'unikernel-ticker', autostart: true }] });
    const { pid } = await detail(routes, 'ticker');
    recordStarted(pidDir, 'reused', pid!);
    const reused = join(pidDir, 'reused.pid');
    const recorded = JSON.parse(readFileSync(reused, 'utf8')) as { startTicks: number };
    writeFileSync(reused, JSON.stringify({ ...recorded, startTicks: recorded.startTicks - 100 }));

    await endLeftovers(pidDir, log);
    expect(alive(sleeper.pid!)).toBe(true);
    expect(alive(pid!)).toBe(true);
    // The pidfiles are spent either way.
    expect(existsSync(reused)).toBe(false);
    expect(existsSync(join(pidDir, 'not-qemu.pid'))).toBe(false);
  }, 60_000);
});
