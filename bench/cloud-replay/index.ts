/**
 * cloud-replay: 100 devices × 10 properties at 1 Hz through an hour of cloud outage (3.6 million
 * property updates) into the agent, then the cloud comes back: time to drain (against the hour
 * it stands for), the agent's peak memory while draining, bytes sent per update, and what the
 * cloud got lost or twice (by edge version per property). Baseline, same run: the same traffic
 * with the cloud connected all along.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BeehiveMessage } from '../../src/cloud/message.js';
import { deviceMessage, deviceModelMessage, startCloudHub } from '../../test/support/cloudhub/server.js';
import { tempDir } from '../../test/support/agent.js';
import { agentNodeFlags } from '../../test/support/agent-process.js';
import { report, round } from '../lib/report.js';
import { DEVICES, PROPERTIES, type WorkerCommand } from './traffic.js';

const SECONDS = Number(process.env.BENCH_CLOUD_SECONDS ?? 3600);
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

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

export async function cloudReplay(): Promise<void> {
  const hub = await startCloudHub();
  hub.keepMessages = false;
  const received = new Received();
  hub.onMessage = received.add;
  const data = tempDir('bench-cloud-');
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

    await hub.stop();
    received.phase();
    started = performance.now();
    const { queued } = await ask({ cmd: 'generate', seconds: SECONDS });
    const fillS = (performance.now() - started) / 1000;
    const idle = rssMb(worker.pid!);
    let peak = idle;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(worker.pid!))), 100);
    const restarted = Date.now();
    await hub.restart();
    const { drainedAt, connectedAt, heapUsed, external } = (await ask({ cmd: 'drained' })) as { drainedAt: number; connectedAt: number; heapUsed: number; external: number };
    clearInterval(sampler);
    // From the reconnect: how long the agent waits to retry is its backoff, reported apart.
    const drainS = (drainedAt - connectedAt) / 1000;
    report('cloud-replay', {
      updates: received.updates,
      lost: received.lost,
      duplicated: received.duplicated,
      redelivered: received.redelivered,
      drain_s: round(drainS),
      drain_speedup: round(SECONDS / drainS, 1),
      reconnect_s: round((connectedAt - restarted) / 1000),
      peak_rss_mb: round(peak),
      rss_before_drain_mb: round(idle),
      heap_used_mb: round(heapUsed / 1024 ** 2),
      external_mb: round(external / 1024 ** 2),
      bytes_per_update: round(received.bytes / received.updates, 1),
      queued_reports: Number(queued),
      outage_fill_s: round(fillS),
      connected_s: round(connectedS),
      connected_speedup: round(SECONDS / connectedS, 1),
      connected_lost: connected.lost,
      connected_duplicated: connected.duplicated,
      connected_bytes_per_update: round(connected.bytes / connected.updates, 1),
    });
  } finally {
    worker.kill('SIGKILL');
    await hub.stop();
    rmSync(data, { recursive: true, force: true });
  }
}
