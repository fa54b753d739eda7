/**
 * The agent side of bench/cloud-replay, in a process of its own so that its memory is its own:
 * the whole agent with the cloud link on, and the traffic of 100 devices × 10 properties at 1 Hz
 * fed into the twin as fast as it takes it (as mappers would, compressed in time). Commands as
 * JSON lines on stdin, answers as JSON lines on stdout.
 */
import { createInterface } from 'node:readline';
import { startAgent } from '../../src/agent.js';
import { resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { DEVICES, PROPERTIES, type WorkerCommand } from './traffic.js';


const env = process.env;
const config = resolveConfig({
  flags: {
    node: 'bench-edge',
    dataDir: env.BENCH_DATA!,
    profiles: [],
    mqtt: { port: 0 },
    api: { port: 0 },
    log: { level: 'warn' },
    cloud: {
      enabled: true,
      server: '127.0.0.1',
      httpsPort: Number(env.BENCH_HTTPS_PORT),
      websocketPort: Number(env.BENCH_WS_PORT),
      token: env.BENCH_TOKEN,
      // The default quota (256 MB): the hour of outage has to fit it without coalescing.
    },
  },
});
const agent = await startAgent(config, createLogger(config.log.level));
const cloud = agent.cloud!;
// The agent logs on stdout too: answers are the lines with `answer`.
const answer = (value: unknown) => console.log(JSON.stringify({ answer: value }));
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function until(test: () => boolean): Promise<void> {
  while (!test()) await new Promise((resolve) => setTimeout(resolve, 20));
}

let tick = 0;
/** `seconds` of traffic: each second every device reports its ten properties in one twin update. */
async function generate(seconds: number): Promise<number> {
  const ids = Array.from({ length: DEVICES }, (_, d) => `default/bench-${String(d).padStart(3, '0')}`);
  let updates = 0;
  for (let s = 0; s < seconds; s++, tick++) {
    for (const id of ids) {
      const values: Record<string, string> = {};
      for (let p = 0; p < PROPERTIES; p++) values[`p${p}`] = String((tick * 7 + p) % 1000);
      agent.twins.report(id, values);
      updates += PROPERTIES;
    }
    // One group commit per simulated second, as the twin would see it from a hundred mappers.
    await turn();
  }
  await agent.twins.flushed();
  return updates;
}

/** `reports` single-property reports, the costliest kind to queue: a hundred per turn, each device one property in turn. */
async function single(reports: number): Promise<number> {
  const ids = Array.from({ length: DEVICES }, (_, d) => `default/bench-${String(d).padStart(3, '0')}`);
  let sent = 0;
  for (; sent < reports; tick++) {
    for (const id of ids) {
      if (sent++ >= reports) break;
      agent.twins.report(id, { [`p${tick % PROPERTIES}`]: String((tick * 7) % 1000) });
    }
    await turn();
  }
  await agent.twins.flushed();
  return reports;
}

await until(() => cloud.status().registered);
answer({ ready: true });
createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as WorkerCommand;
  const run = async () => {
    if (command.cmd === 'devices') {
      await until(() => agent.twins.list().filter((d) => d.managed).length === DEVICES);
      return { devices: DEVICES };
    }
    if (command.cmd === 'generate') return { updates: await generate(command.seconds), ...cloud.status().outbox };
    if (command.cmd === 'single') return { updates: await single(command.reports), ...cloud.status().outbox };
    await until(() => {
      const { link, outbox } = cloud.status();
      return link.connected && outbox.queued === 0 && outbox.inFlight === 0;
    });
    return { drainedAt: Date.now(), connectedAt: Date.parse(cloud.status().link.since!), dropped: cloud.status().outbox.dropped, ...process.memoryUsage() };
  };
  void run().then(answer);
});
