/**
 * startup: from process start to "agent ready" (broker listening, twin loaded, API up), with
 * the demo profiles and with 100 devices × 10 properties, on a data directory that already
 * holds their twin (the usual restart). Baseline, same run: a bare Node.js process printing a line.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { spawnAgent } from '../test/support/agent-process.js';
import { writeBenchProfiles } from './lib/profiles.js';
import { median, report, round } from './lib/report.js';

const RUNS = Number(process.env.BENCH_ROUNDS ?? 5);
const DEMO_PROFILES = fileURLToPath(new URL('../../device-profiles/demo', import.meta.url));

async function readyMs(profiles: string, dataDir: string): Promise<number> {
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench']);
  agent.child.kill('SIGTERM');
  await agent.exited;
  return agent.readyAfterMs;
}

async function bareNodeMs(): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, ['-e', 'console.log("ready")'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => createInterface({ input: child.stdout! }).once('line', () => resolve()));
  const elapsed = performance.now() - started;
  await new Promise((resolve) => child.once('exit', resolve));
  return elapsed;
}

async function medianOf(runs: number, measure: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await measure());
  return median(values);
}

export async function startup(): Promise<void> {
  const large = writeBenchProfiles(100, 10, 'virtualProtocol', 1000);
  const demoData = writeBenchProfiles(0, 0, 'none');
  const largeData = writeBenchProfiles(0, 0, 'none');
  try {
    const firstLarge = await readyMs(large, largeData);
    await readyMs(DEMO_PROFILES, demoData);
    const demo = await medianOf(RUNS, () => readyMs(DEMO_PROFILES, demoData));
    const hundred = await medianOf(RUNS, () => readyMs(large, largeData));
    const bare = await medianOf(RUNS, bareNodeMs);
    report('startup', {
      ready_ms: Math.round(demo),
      ready_ms_100_devices: Math.round(hundred),
      first_start_ms_100_devices: Math.round(firstLarge),
      bare_node_ms: Math.round(bare),
      ratio_vs_bare_node: round(demo / bare, 1),
    });
  } finally {
    for (const dir of [large, demoData, largeData]) rmSync(dir, { recursive: true, force: true });
  }
}
