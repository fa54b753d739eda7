/**
 * cloud-replay: 100 devices × 10 properties at 1 Hz through an hour of cloud outage (3.6 million
 * property updates) into the agent, under the default queue quota, then the cloud comes back:
 * time to drain (against the hour it stands for), the agent's peak memory through the outage and
 * the drain, bytes on disk per queued update, and what the cloud got lost or twice (by edge version
 * per property). Then a shorter outage of single-property reports, the costliest kind to queue.
 * Baseline, same run: the same traffic with the cloud connected all along. `sources` in the JSON
 * line says where each figure comes from.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BeehiveMessage } from '../../src/cloud/message.js';
import { deviceMessage, deviceModelMessage, startCloudHub } from '../../test/support/cloudhub/server.js';
import { tempDir } from '../../test/support/agent.js';
import { agentNodeFlags } from '../../test/support/agent-process.js';
import { report, round } from '../lib/report.js';
import { DEVICES, PROPERTIES, type WorkerCommand } from './traffic.js';

const SECONDS = Number(process.env.BENCH_CLOUD_SECONDS ?? 3600);
const SINGLE_REPORTS = Number(process.env.BENCH_CLOUD_SINGLE ?? 200_000);
const DEFAULT_QUOTA = 256 * 1024 ** 2;
const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** What the cloud received, judged per property by the edge version each report carries. */
class Received {
  updates = 0;
  bytes = 0;
  lost = 0;
  duplicated = 0;
  redelivered = 0;
  private readonly last = new Map<string, number>();
  private ids = new Set<string>();

  add = (message: BeehiveMessage, bytes: number): void => {
    if (!message.route.resource.endsWith('/twin/edge_updated')) return;
    if (this.ids.has(message.header.msg_id)) {
      this.redelivered++;
      return;
    }
    this.ids.add(message.header.msg_id);
    this.bytes += bytes;
    const twin = (message.content as { twin: Record<string, { actual_version?: { edge: number } }> }).twin;
    for (const [property, value] of Object.entries(twin)) {
      const version = value.actual_version?.edge ?? 0;
      const key = `${message.route.resource}\0${property}`;
      const last = this.last.get(key) ?? 0;
      if (version <= last) this.duplicated++;
      else this.lost += version - last - 1;
      this.last.set(key, Math.max(last, version));
      this.updates++;
    }
  };

  /** A new phase: counts start again, the versions seen so far still count. */
  phase(): void {
    this.updates = this.bytes = this.lost = this.duplicated = this.redelivered = 0;
    this.ids = new Set();
  }
}

const model = {
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'DeviceModel',
  metadata: { name: 'bench-meter', namespace: 'default' },
  spec: { properties: Array.from({ length: PROPERTIES }, (_, p) => ({ name: `p${p}`, type: 'INT', accessMode: 'ReadOnly' })) },
};

function device(d: number) {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: `bench-${String(d).padStart(3, '0')}`, namespace: 'default' },
    spec: {
      deviceModelRef: { name: 'bench-meter' },
      nodeName: 'bench-edge',
      // No mapper serves this protocol: the benchmark feeds the twin itself.
      protocol: { protocolName: 'bench' },
      properties: Array.from({ length: PROPERTIES }, (_, p) => ({ name: `p${p}`, reportToCloud: true })),
    },
  };
}

function procStatusMb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssFile'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

/** CPU seconds the process has used (utime + stime in /proc/PID/stat, at the kernel's 100 ticks a second). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Starts the kernel's peak-RSS count (VmHWM) afresh, so that it covers the replay only; false where the kernel refuses. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Bytes in the pages of the agent's database that hold data (page_count − freelist_count, WAL
 * included), read by a connection of this process: free pages the drain left are reused, so
 * file growth would understate what a queue takes.
 */
function usedBytes(file: string): number {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const pragma = (name: string) => db.pragma(name, { simple: true }) as number;
    return (pragma('page_count') - pragma('freelist_count')) * pragma('page_size');
  } finally {
    db.close();
  }
}

export async function cloudReplay(): Promise<void> {
  const hub = await startCloudHub();
  hub.keepMessages = false;
  const received = new Received();
  hub.onMessage = received.add;
  const data = tempDir('bench-cloud-');
  const database = join(data, 'twin.db');
  const worker = spawn(process.execPath, [...agentNodeFlags(), WORKER], {
    env: { ...process.env, BENCH_DATA: data, BENCH_HTTPS_PORT: String(hub.httpsPort), BENCH_WS_PORT: String(hub.wsPort), BENCH_TOKEN: hub.token },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: worker.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, number | boolean>> => {
    for (;;) {
      const line = await lines.next();
      if (line.done) throw new Error('the agent worker exited');
      const parsed = JSON.parse(line.value as string) as { answer?: Record<string, number | boolean> };
      if (parsed.answer) return parsed.answer;
      console.error(line.value);
    }
  };
  const ask = (command: WorkerCommand) => {
    worker.stdin!.write(`${JSON.stringify(command)}\n`);
    return next();
  };
  const pid = worker.pid!;
  try {
    await next();
    const objects = [deviceModelMessage('insert', model), ...Array.from({ length: DEVICES }, (_, d) => deviceMessage('insert', device(d)))];
    for (const message of objects) hub.send(message);
    await ask({ cmd: 'devices' });

    received.phase();
    let started = performance.now();
    await ask({ cmd: 'generate', seconds: SECONDS });
    await ask({ cmd: 'drained' });
    const connectedS = (performance.now() - started) / 1000;
    const connected = { ...received };

    // The hour of outage: each second a twin report of ten properties per device.
    await hub.stop();
    received.phase();
    const peakReset = resetPeak(pid);
    let sampled = procStatusMb(pid, 'VmRSS');
    const sampler = setInterval(() => (sampled = Math.max(sampled, procStatusMb(pid, 'VmRSS'))), 100);
    const diskBefore = usedBytes(database);
    started = performance.now();
    const fill = (await ask({ cmd: 'generate', seconds: SECONDS })) as { updates: number; queued: number; bytes: number; dropped: number };
    const fillS = (performance.now() - started) / 1000;
    const diskBytes = usedBytes(database) - diskBefore;
    const idle = procStatusMb(pid, 'VmRSS');
    const idleCode = procStatusMb(pid, 'RssFile');
    const restarted = Date.now();
    const agentCpu = cpuSeconds(pid);
    const hubCpu = process.cpuUsage();
    await hub.restart();
    const { drainedAt, connectedAt, heapUsed, heapTotal, external, dropped } = (await ask({ cmd: 'drained' })) as Record<string, number>;
    const hubUsed = process.cpuUsage(hubCpu);
    const drainCpu = { agent: cpuSeconds(pid) - agentCpu, hub: (hubUsed.user + hubUsed.system) / 1e6 };
    clearInterval(sampler);
    const peak = peakReset ? procStatusMb(pid, 'VmHWM') : sampled;
    // From the reconnect: how long the agent waits to retry is its backoff, reported apart.
    const drainS = (drainedAt! - connectedAt!) / 1000;
    const replay = { ...received };

    // A shorter outage of single-property reports: a row per update, the most a queued update costs.
    await hub.stop();
    received.phase();
    const singleBefore = usedBytes(database);
    const single = (await ask({ cmd: 'single', reports: SINGLE_REPORTS })) as { updates: number; bytes: number; dropped: number };
    const singleDisk = (usedBytes(database) - singleBefore) / SINGLE_REPORTS;
    await hub.restart();
    const singleDrain = (await ask({ cmd: 'drained' })) as Record<string, number>;

    report('cloud-replay', {
      updates: replay.updates,
      lost: replay.lost,
      duplicated: replay.duplicated,
      redelivered: replay.redelivered,
      dropped: dropped!,
      drain_s: round(drainS),
      drain_speedup: round(SECONDS / drainS, 1),
      reconnect_s: round((connectedAt! - restarted) / 1000),
      drain_cpu_agent_s: round(drainCpu.agent),
      drain_cpu_hub_s: round(drainCpu.hub),
      peak_rss_mb: round(peak),
      peak_rss_sampled_mb: round(sampled),
      rss_before_drain_mb: round(idle),
      rss_file_mb: round(idleCode),
      heap_total_mb: round(heapTotal! / 1024 ** 2),
      heap_used_mb: round(heapUsed! / 1024 ** 2),
      external_mb: round(external! / 1024 ** 2),
      bytes_per_update: round(diskBytes / fill.updates, 1),
      quota_bytes_per_update: round(fill.bytes / fill.updates, 1),
      queue_mb: round(fill.bytes / 1024 ** 2),
      queued_reports: fill.queued,
      single_bytes_per_update: round(singleDisk, 1),
      single_quota_bytes_per_update: round(single.bytes / SINGLE_REPORTS, 1),
      single_updates_in_default_quota_m: round(DEFAULT_QUOTA / (single.bytes / SINGLE_REPORTS) / 1e6, 2),
      single_updates: received.updates,
      single_lost: received.lost,
      single_duplicated: received.duplicated,
      single_dropped: singleDrain.dropped! - dropped!,
      sent_bytes_per_update: round(replay.bytes / replay.updates, 1),
      outage_fill_s: round(fillS),
      connected_s: round(connectedS),
      connected_speedup: round(SECONDS / connectedS, 1),
      connected_lost: connected.lost,
      connected_duplicated: connected.duplicated,
      connected_bytes_per_update: round(connected.bytes / connected.updates, 1),
      sources: [
        'updates, lost, duplicated, redelivered, sent_bytes_per_update: counted by the fake CloudHub from the reports it received (edge versions per property, message ids)',
        'dropped: the outbox stats (reports the quota pushed out), default quota 256 MB',
        'drain_s: agent reconnect to empty outbox (worker clock); drain_speedup = outage seconds / drain_s',
        `peak_rss_mb: the kernel's VmHWM of the agent process, ${peakReset ? 'reset through /proc/PID/clear_refs when the outage starts, read once drained' : 'clear_refs refused: the highest VmRSS sampled every 100 ms'}; peak_rss_sampled_mb: VmRSS sampled every 100 ms over outage and drain; rss_before_drain_mb: VmRSS at the end of the outage`,
        'rss_file_mb: RssFile of the agent (mapped code: node, ICU data, native modules) at the end of the outage',
        'heap_total_mb, heap_used_mb, external_mb: process.memoryUsage() in the agent once drained',
        'drain_cpu_agent_s: CPU time of the agent process over the drain (/proc/PID/stat); drain_cpu_hub_s: of the bench process, which is the fake CloudHub (TLS, parsing, answers, counting)',
        'bytes_per_update: growth of the database pages in use ((page_count - freelist_count) x page_size, WAL included) over the outage, divided by updates, twin rows included',
        'quota_bytes_per_update, queue_mb: what the outbox quota counts (stats.bytes) at the end of the outage',
        'single_*: the same for an outage of single-property reports (one row per update); single_updates_in_default_quota_m = 256 MB / single_quota_bytes_per_update',
      ].join('; '),
    });
  } finally {
    worker.kill('SIGKILL');
    await hub.stop();
    rmSync(data, { recursive: true, force: true });
  }
}
