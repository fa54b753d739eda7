/**
 * footprint: what the agent costs a gateway at rest.
 * - rss_mb: resident memory serving 100 virtual devices (10 properties each, read every second),
 *   the median of one sample a second over BENCH_FOOTPRINT_S seconds (60) after a warm-up, with the breakdown the agent's GET /api/v1/memory gives
 *   at that moment (JS heap, code, external, SQLite cache bound, mapped files vs anonymous);
 * - cpu_pct: the CPU time it used (utime + stime from /proc/<pid>/stat) over that run after a
 *   10 s warm-up, in % of one core;
 * - rss_mb_cloud: the same load with the cloud link enabled and connected to the project's
 *   CloudHub-compatible server (test/support/cloudhub);
 * - idle_wakeups_per_s: how often an agent with no devices wakes up (voluntary context switches
 *   of its main thread, /proc/<pid>/task/<pid>/status) over 20 s.
 * Baseline, same run: an idle bare Node.js process (its RSS, and its wake-ups).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemoryReport } from '../src/api/memory.js';
import { spawnAgent, type AgentProcess } from '../test/support/agent-process.js';
import { startCloudHub } from '../test/support/cloudhub/server.js';
import { writeBenchProfiles } from './lib/profiles.js';
import { median, report, round } from './lib/report.js';

const DEVICES = 100;
const PROPERTIES = 10;
const RUN_S = Number(process.env.BENCH_FOOTPRINT_S ?? 60);
const WARMUP_S = 10;
const IDLE_S = 20;
const TICKS_PER_S = 100;

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** CPU time the process used so far, in clock ticks (utime + stime). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Times the main thread went to sleep waiting for something: each is one wake-up later. */
function wakeups(pid: number): number {
  return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

async function stopAgent(agent: AgentProcess): Promise<void> {
  agent.child.kill('SIGTERM');
  await agent.exited;
}

/** Runs `seconds`, sampling the RSS each second: where the heap stands between two collections moves one sample by several MB. */
async function watch(pid: number, seconds: number): Promise<{ median: number; peak: number }> {
  const samples: number[] = [];
  for (let s = 0; s < seconds; s++) {
    await sleep(1000);
    samples.push(rssMb(pid));
  }
  return { median: median(samples), peak: Math.max(...samples) };
}

async function underLoad(profiles: string): Promise<Record<string, number>> {
  const dataDir = writeBenchProfiles(0, 0, 'none');
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench']);
  try {
    await sleep(WARMUP_S * 1000);
    const before = cpuTicks(agent.child.pid!);
    const rss = await watch(agent.child.pid!, RUN_S - WARMUP_S);
    const cpu = ((cpuTicks(agent.child.pid!) - before) / TICKS_PER_S / (RUN_S - WARMUP_S)) * 100;
    const memory = (await (await agent.api('/api/v1/memory')).json()) as MemoryReport;
    const twin = (await (await agent.api('/api/v1/devices/default/bench-000/twin')).json()) as Record<string, { actual_version?: { edge: number } }>;
    return {
      rss_mb: round(rss.median),
      peak_rss_mb: round(rss.peak),
      cpu_pct: round(cpu, 2),
      js_heap_used_mb: memory.js_heap_used_mb,
      js_heap_reserved_mb: memory.js_heap_reserved_mb,
      js_code_mb: memory.js_code_mb,
      external_mb: memory.external_mb,
      sqlite_cache_max_mb: memory.sqlite_cache_max_mb,
      mapped_files_mb: memory.mapped_files_mb,
      anonymous_mb: memory.anonymous_mb,
      reports_per_property: twin.p0?.actual_version?.edge ?? 0,
    };
  } finally {
    await stopAgent(agent);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function withCloud(profiles: string): Promise<number> {
  const hub = await startCloudHub();
  const dataDir = writeBenchProfiles(0, 0, 'none');
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench'], {
    env: {
      EDGE_AGENT_CLOUD__ENABLED: 'true',
      EDGE_AGENT_CLOUD__SERVER: '127.0.0.1',
      EDGE_AGENT_CLOUD__HTTPS_PORT: String(hub.httpsPort),
      EDGE_AGENT_CLOUD__WEBSOCKET_PORT: String(hub.wsPort),
      EDGE_AGENT_CLOUD__TOKEN: hub.token,
    },
  });
  try {
    for (let tries = 0; !((await (await agent.api('/api/v1/cloud')).json()) as { link?: { connected?: boolean } }).link?.connected; tries++) {
      if (tries > 300) throw new Error('the cloud link did not connect');
      await sleep(100);
    }
    return round((await watch(agent.child.pid!, RUN_S)).median);
  } finally {
    await stopAgent(agent);
    await hub.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function idleWakeups(bare: ChildProcess): Promise<{ agent: number; bare: number }> {
  const profiles = writeBenchProfiles(0, 0, 'none');
  const dataDir = writeBenchProfiles(0, 0, 'none');
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench']);
  try {
    await sleep(5000);
    const [agentBefore, bareBefore] = [wakeups(agent.child.pid!), wakeups(bare.pid!)];
    await sleep(IDLE_S * 1000);
    return { agent: (wakeups(agent.child.pid!) - agentBefore) / IDLE_S, bare: (wakeups(bare.pid!) - bareBefore) / IDLE_S };
  } finally {
    await stopAgent(agent);
    rmSync(profiles, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function footprint(): Promise<void> {
  const profiles = writeBenchProfiles(DEVICES, PROPERTIES, 'virtualProtocol', 1000);
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    const load = await underLoad(profiles);
    const rssCloud = await withCloud(profiles);
    const idle = await idleWakeups(bare);
    const baseline = rssMb(bare.pid!);
    report('footprint', {
      devices: DEVICES,
      properties: DEVICES * PROPERTIES,
      seconds: RUN_S,
      ...load,
      rss_mb_cloud: rssCloud,
      idle_wakeups_per_s: round(idle.agent, 2),
      bare_node_wakeups_per_s: round(idle.bare, 2),
      bare_node_rss_mb: round(baseline),
      ratio_vs_bare_node: round(load.rss_mb! / baseline, 2),
      sources:
        'rss_mb: median of VmRSS (/proc/<pid>/status) sampled each second after a 10 s warm-up, peak_rss_mb their largest; cpu_pct: /proc/<pid>/stat utime+stime after a 10 s warm-up; breakdown: the agent’s GET /api/v1/memory; rss_mb_cloud: same load, cloud link connected to test/support/cloudhub; wakeups: voluntary context switches of the main thread, no devices',
    });
  } finally {
    bare.kill('SIGTERM');
    rmSync(profiles, { recursive: true, force: true });
  }
}
