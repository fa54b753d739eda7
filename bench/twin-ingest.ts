/**
 * twin-ingest: several MQTT clients publish twin updates (one property each) for 100 devices ×
 * 10 properties through the agent's embedded broker into the SQLite twin, at QoS 0 and QoS 1,
 * logged in as a user bound to those devices, so the access rules run on every publish (ACLs
 * on); and at QoS 0 as anonymous clients on loopback, where only the rules for every client run
 * (ACLs off). Baseline, same clients and messages: a bare aedes broker delivering them to one
 * subscriber.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { agentNodeFlags, spawnAgent } from '../test/support/agent-process.js';
import type { ApiFetch } from '../test/support/api.js';
import { hashPassword } from '../src/bus/passwords.js';
import { deviceName, propertyName, writeBenchProfiles } from './lib/profiles.js';
import { median, report, round } from './lib/report.js';

const DEVICES = 100;
const PROPERTIES = 10;
const CLIENTS = 4;
const UPDATES = Number(process.env.BENCH_UPDATES ?? 100_000);
/** Rounds alternate baseline and agent runs; medians are reported, as two shared cores are noisy. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

function topic(i: number): string {
  return `$hw/events/device/default/${deviceName(i % DEVICES)}/twin/update`;
}

function payload(i: number): string {
  const key = propertyName(Math.floor(i / DEVICES) % PROPERTIES);
  return `{"event_id":"e${i}","timestamp":${Date.now()},"twin":{"${key}":{"actual":{"value":"${(i % 1000) / 10}"},"metadata":{"type":"float"}}}}`;
}

const USER = { username: 'bench-mapper', password: 'bench password' };

/** An agent config with one user, bound to every bench device, as a mapper serving them would be. */
async function writeUsersConfig(dir: string): Promise<string> {
  const file = join(dir, 'users.yaml');
  const devices = Array.from({ length: DEVICES }, (_, d) => `default/${deviceName(d)}`);
  const user = { username: USER.username, passwordHash: await hashPassword(USER.password), devices };
  writeFileSync(file, `mqtt:\n  users: [${JSON.stringify(user)}]\n`);
  return file;
}

async function connectAll(url: string, login: { username?: string; password?: string } = {}): Promise<MqttClient[]> {
  return Promise.all(Array.from({ length: CLIENTS }, (_, c) => mqtt.connectAsync(url, { clientId: `bench-${c}-${process.pid}`, reconnectPeriod: 0, ...login })));
}

/** Publishes UPDATES messages spread over the clients; `done` resolves when the far side has them all. */
async function publishAll(clients: MqttClient[], qos: 0 | 1, done: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await Promise.all(
    clients.map(async (client, c) => {
      const pending: Array<Promise<unknown>> = [];
      for (let i = c; i < UPDATES; i += CLIENTS) {
        if (qos === 1) pending.push(client.publishAsync(topic(i), payload(i), { qos: 1 }));
        else client.publish(topic(i), payload(i), { qos: 0 });
        // Yield now and then so the socket drains instead of buffering everything.
        if (i % 2000 < CLIENTS) await new Promise((r) => setImmediate(r));
      }
      await Promise.all(pending);
    }),
  );
  await done();
  return (performance.now() - started) / 1000;
}

/** A QoS 1 update per client, acknowledged only once the agent has applied and committed all before it. */
async function agentCaughtUp(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((client) => client.publishAsync(topic(0), payload(0), { qos: 1 })));
}

async function sumActualVersions(api: ApiFetch): Promise<number> {
  let sum = 0;
  for (let d = 0; d < DEVICES; d++) {
    const twin = (await (await api(`/api/v1/devices/default/${deviceName(d)}/twin`)).json()) as Record<string, { actual_version?: { edge: number } }>;
    for (const t of Object.values(twin)) sum += t.actual_version?.edge ?? 0;
  }
  return sum;
}

/** One agent run; with `usersConfig` the clients log in as the bound user (ACLs on), else anonymously on loopback. */
async function agentRun(qos: 0 | 1, profiles: string, dataDir: string, usersConfig?: string): Promise<{ rate: number; applied: number }> {
  const config = usersConfig ? ['--config', usersConfig] : [];
  const agent = await spawnAgent(['--profiles', profiles, '--data', dataDir, '--node', 'bench', ...config]);
  try {
    const clients = await connectAll(agent.mqttUrl, usersConfig ? USER : {});
    const before = await sumActualVersions(agent.api);
    const seconds = await publishAll(clients, qos, () => (qos === 0 ? agentCaughtUp(clients) : Promise.resolve()));
    const applied = (await sumActualVersions(agent.api)) - before - (qos === 0 ? CLIENTS : 0);
    await Promise.all(clients.map((c) => c.endAsync()));
    return { rate: UPDATES / seconds, applied };
  } finally {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
}

async function bareRun(): Promise<number> {
  const broker = spawn(process.execPath, [...agentNodeFlags(), fileURLToPath(new URL('./bare-broker.js', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => {
      createInterface({ input: broker.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
    });
    const url = `mqtt://127.0.0.1:${port}`;
    const subscriber = await mqtt.connectAsync(url, { clientId: `bench-sub-${process.pid}`, reconnectPeriod: 0 });
    await subscriber.subscribeAsync('$hw/events/device/#', { qos: 0 });
    let received = 0;
    let allReceived: () => void = () => undefined;
    const everything = new Promise<void>((resolve) => (allReceived = resolve));
    subscriber.on('message', () => {
      if (++received === UPDATES) allReceived();
    });
    const clients = await connectAll(url);
    const seconds = await publishAll(clients, 0, () => everything);
    await Promise.all([...clients, subscriber].map((c) => c.endAsync()));
    return UPDATES / seconds;
  } finally {
    broker.kill('SIGTERM');
  }
}

export async function twinIngest(): Promise<void> {
  const profiles = writeBenchProfiles(DEVICES, PROPERTIES, 'bench');
  const dataDir = writeBenchProfiles(0, 0, 'none');
  try {
    const usersConfig = await writeUsersConfig(dataDir);
    const bare: number[] = [];
    const qos0: number[] = [];
    const qos1: number[] = [];
    const qos0AclOff: number[] = [];
    let applied0 = 0;
    let applied1 = 0;
    let applied0AclOff = 0;
    for (let r = 0; r < ROUNDS; r++) {
      bare.push(await bareRun());
      const run0 = await agentRun(0, profiles, dataDir, usersConfig);
      const run1 = await agentRun(1, profiles, dataDir, usersConfig);
      const run0AclOff = await agentRun(0, profiles, dataDir);
      qos0.push(run0.rate);
      qos1.push(run1.rate);
      qos0AclOff.push(run0AclOff.rate);
      applied0 += run0.applied;
      applied1 += run1.applied;
      applied0AclOff += run0AclOff.applied;
    }
    report('twin-ingest', {
      updates: UPDATES,
      rounds: ROUNDS,
      clients: CLIENTS,
      updates_per_s_qos0: Math.round(median(qos0)),
      updates_per_s_qos1: Math.round(median(qos1)),
      updates_per_s_qos0_acl_off: Math.round(median(qos0AclOff)),
      bare_aedes_per_s: Math.round(median(bare)),
      ratio_vs_bare: round(median(qos0.map((q, i) => q / bare[i]!)), 2),
      ratio_acl_on_vs_off: round(median(qos0.map((q, i) => q / qos0AclOff[i]!)), 2),
      lost_qos0: UPDATES * ROUNDS - applied0,
      lost_qos1: UPDATES * ROUNDS - applied1,
      lost_qos0_acl_off: UPDATES * ROUNDS - applied0AclOff,
    });
  } finally {
    rmSync(profiles, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}
