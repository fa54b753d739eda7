/**
 * Runs inside the VM testbed (see bench/ble/host.ts). The SensorTag peripheral sends numbered
 * notifications, paced (latency) and back to back (rate), to plain noble (the baseline) and to
 * the whole agent, where a value counts as arrived when its twin change is committed; each in a
 * process of its own, as noble holds the controller until its process ends. Times are hrtime on
 * both sides of the emulated radio: one clock.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { agentEnv, BleTestbed, TEMPERATURE_DATA, type BlePeripheral } from '../../test/vm/ble-testbed.js';
import { writeResult } from '../../test/vm/scenario.js';
import { median } from '../lib/report.js';
import type { Arrivals } from './arrivals.js';

const PACED = { count: Number(process.env.BENCH_BLE_PACED ?? 500), intervalMs: 20 };
const BURST = { count: Number(process.env.BENCH_BLE_BURST ?? 2000), intervalMs: 0 };
/** Not measured: the first burst after connecting runs slower on both sides (JIT, the emulated radio settling). */
const WARM_UP = { count: 300, intervalMs: 0 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Phase {
  sent: number;
  /** Distinct sequence numbers that arrived. */
  arrived: number;
  p50Ms: number;
  p99Ms: number;
  /** Notifications sent up to the last one that arrived, over the time from the first one sent to its arrival. */
  perSecond: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? NaN;
}

/** One burst from the peripheral; `collect` returns what arrived since the previous call. */
async function phase(tag: BlePeripheral, burst: { count: number; intervalMs: number }, collect: () => Promise<Arrivals>): Promise<Phase> {
  const from = tag.events.length;
  await collect();
  tag.send({ cmd: 'burst', ...burst });
  await tag.waitFor('burst-done', undefined, 120_000);
  await sleep(1000);
  const arrivals = await collect();
  const sent = new Map<number, bigint>();
  for (const event of tag.events.slice(from)) if (event.event === 'sent') sent.set(event.seq, BigInt(event.t));
  const first = new Map<number, bigint>();
  for (const [seq, t] of arrivals) if (!first.has(seq) && sent.has(seq) && BigInt(t) >= sent.get(seq)!) first.set(seq, BigInt(t));
  const latencies = [...first].map(([seq, t]) => Number(t - sent.get(seq)!) / 1e6).sort((a, b) => a - b);
  // Up to the last one that arrived: the emulated radio drops a notification now and then.
  const lastSeq = Math.max(-1, ...first.keys());
  return {
    sent: sent.size,
    arrived: first.size,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    perSecond: lastSeq < 0 ? 0 : (lastSeq + 1) / (Number(first.get(lastSeq)! - sent.get(0)!) / 1e9),
  };
}

type Side = 'raw' | 'agent';
const SUBSCRIBERS: Record<Side, string> = { raw: './raw-subscriber.js', agent: './agent-subscriber.js' };
/** Alternating, so neither side always runs on a colder or warmer VM. */
const ROUNDS: Side[] = ['raw', 'agent', 'raw', 'agent'];

/** One subscriber process connected to the tag: a warm-up burst, then the paced and the back-to-back one. */
async function round(tag: BlePeripheral, side: Side): Promise<{ paced: Phase; burst: Phase }> {
  const script = fileURLToPath(new URL(SUBSCRIBERS[side], import.meta.url));
  const child = spawn(process.execPath, [script], { env: { ...process.env, ...agentEnv(), BENCH_PERIPHERAL: tag.address }, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const line = await lines.next();
    if (line.done) throw new Error(`the ${side} subscriber exited`);
    return JSON.parse(line.value as string) as { ready?: boolean; received?: Arrivals };
  };
  try {
    await next();
    await tag.waitFor('subscribe', (e) => e.uuid === TEMPERATURE_DATA, 60_000);
    // The value read at connect time is in, and the connection has settled.
    await sleep(1000);
    const collect = async () => {
      child.stdin!.write('dump\n');
      return (await next()).received!;
    };
    await phase(tag, WARM_UP, collect);
    return { paced: await phase(tag, PACED, collect), burst: await phase(tag, BURST, collect) };
  } finally {
    child.stdin!.end();
    await exited;
    await tag.waitFor('disconnect');
  }
}

/** Medians of the figures over a side's rounds, counts summed. */
function combine(phases: Phase[]): Phase {
  return {
    sent: phases.reduce((sum, p) => sum + p.sent, 0),
    arrived: phases.reduce((sum, p) => sum + p.arrived, 0),
    p50Ms: median(phases.map((p) => p.p50Ms)),
    p99Ms: median(phases.map((p) => p.p99Ms)),
    perSecond: median(phases.map((p) => p.perSecond)),
  };
}

const result: Record<string, unknown> = {};
setTimeout(() => {
  result.error = 'bench timed out';
  writeResult('bench-ble', result);
  process.exit(1);
}, 280_000).unref();
const testbed = new BleTestbed();
try {
  await testbed.start();
  const tag = await testbed.startPeripheral();
  const rounds: Array<{ side: Side; paced: Phase; burst: Phase }> = [];
  for (const side of ROUNDS) rounds.push({ side, ...(await round(tag, side)) });
  result.rounds = rounds;
  for (const side of ['raw', 'agent'] as const) {
    const mine = rounds.filter((r) => r.side === side);
    result[side] = { paced: combine(mine.map((r) => r.paced)), burst: combine(mine.map((r) => r.burst)) };
  }
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await testbed.stop();
  writeResult('bench-ble', result);
}
