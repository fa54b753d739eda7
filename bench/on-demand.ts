/**
 * on-demand: the Linux service VM started by its first connection (Jitsu): time from connect to
 * the first byte of the answer, from a cold boot and from the snapshot its idle stop left, in the
 * same run, several rounds alternating.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../test/support/agent.js';
import { freePort } from '../test/support/ports.js';
import { spawnAgent } from '../test/support/agent-process.js';
import { median, report, round } from './lib/report.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ON_DEMAND_ROUNDS ?? 3);
const IDLE_MS = 1500;

/** Milliseconds from connecting to the first byte of the HTTP answer. */
function firstByte(port: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
    socket.once('data', () => {
      resolve(performance.now() - started);
      socket.destroy();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the first byte')));
  });
}

export async function onDemand(): Promise<void> {
  const data = tempDir('bench-on-demand-');
  const port = await freePort();
  const runDir = join(data, 'run');
  const workloads = {
    enabled: true,
    images: [join(ROOT, 'images/build')],
    listen: { host: '127.0.0.1', port: 0 },
    workloads: [{ name: 'web', image: 'linux-service', ports: [{ guest: 8080, host: port }], onDemand: { idleTimeoutMs: IDLE_MS } }],
  };
  writeFileSync(join(data, 'agent.json'), JSON.stringify({ workloads, runDir }));
  const agent = await spawnAgent(['--config', join(data, 'agent.json'), '--data', data, '--profiles', tempDir(), '--node', 'bench']);
  const state = async () => ((await (await agent.api('/api/v1/workloads/web')).json()) as { state: string }).state;
  const idle = async () => {
    while ((await state()) !== 'idle') await new Promise((resolve) => setTimeout(resolve, 100));
  };
  const cold: number[] = [];
  const resumed: number[] = [];
  try {
    for (let i = 0; i < ROUNDS; i++) {
      rmSync(join(runDir, 'workloads', 'web.snapshot'), { force: true });
      cold.push(await firstByte(port));
      await idle();
      resumed.push(await firstByte(port));
      await idle();
    }
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  report('on-demand', {
    cold_first_byte_ms: round(median(cold), 0),
    resume_first_byte_ms: round(median(resumed), 0),
    resume_speedup: round(median(cold) / median(resumed), 1),
    rounds: ROUNDS,
  });
}
