/**
 * footprint: resident memory of the agent serving 100 virtual devices (10 properties each,
 * read every second) after a minute. Baseline, same run: an idle bare Node.js process.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnAgent } from '../test/support/agent-process.js';
import { writeBenchProfiles } from './lib/profiles.js';
import { report, round } from './lib/report.js';

const DEVICES = 100;
const PROPERTIES = 10;
const RUN_S = Number(process.env.BENCH_FOOTPRINT_S ?? 60);

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

export async function footprint(): Promise<void> {
  const profiles = writeBenchProfiles(DEVICES, PROPERTIES, 'virtualProtocol', 1000);
  const dataDir = writeBenchProfiles(0, 0, 'none');
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench', '--log-level', 'warn'].slice(0, 6));
  try {
    let peak = 0;
    for (let s = 0; s < RUN_S; s++) {
      await sleep(1000);
      peak = Math.max(peak, rssMb(agent.child.pid!));
    }
    const rss = rssMb(agent.child.pid!);
    const baseline = rssMb(bare.pid!);
    const twin = (await (await agent.api('/api/v1/devices/default/bench-000/twin')).json()) as Record<string, { actual_version?: { edge: number } }>;
    report('footprint', {
      devices: DEVICES,
      properties: DEVICES * PROPERTIES,
      seconds: RUN_S,
      rss_mb: round(rss),
      peak_rss_mb: round(peak),
      bare_node_rss_mb: round(baseline),
      ratio_vs_bare_node: round(rss / baseline, 2),
      reports_per_property: twin.p0?.actual_version?.edge ?? 0,
    });
  } finally {
    agent.child.kill('SIGTERM');
    bare.kill('SIGTERM');
    await agent.exited;
    rmSync(profiles, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}
