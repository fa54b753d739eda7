/**
 * Hostile MQTT clients against the agent as its own process (the compiled CLI, the demo
 * profiles, the default config): more than 5,000 payloads and connections of every kind the
 * broker must survive, from the `mqtt` npm client and raw TCP sockets. Afterwards the agent
 * answers, its resident memory (VmRSS of the child, /proc/<pid>/status) is back under 1.5× what
 * it was at start, and the demo devices still update.
 */
import { readFileSync, rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PROFILES, spawnAgent, tempDir, type AgentProcess } from '../support/agent.js';
import { request } from '../support/mqtt.js';
import { sleep, waitFor } from '../support/wait.js';
import { publishHeader, rawConnect, type RawConnection } from './raw-mqtt.js';

const DEVICE = '$hw/events/device/default';
const DEMO_IDS = ['counter-01', 'led-01', 'thermometer-01', 'random-instance-01'];
const REQUESTS = ['twin/update', 'twin/get', 'state/update'];
/** The defaults the fuzz runs into: mqtt.maxConnections, maxPacketBytes, maxSubscriptionsPerClient, maxRetainedMessages. */
const MAX_CONNECTIONS = 1000;
const MAX_PACKET = 256 * 1024;
const MAX_SUBSCRIPTIONS = 1000;
const MAX_RETAINED = 1000;

function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/\d+/.exec(line)![0]);
}

/** A small deterministic generator, so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** Fails with `what` unless `promise` settles within `ms`: a refusal that does not come is a failure, not a hang. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)));
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

describe('hostile MQTT clients against the agent process', () => {
  const dataDir = tempDir('mqtt-fuzz-');
  let agent: AgentProcess;
  let port: number;
  let pid: number;
  let startRss: number;
  let peakRss = 0;
  let sampler: NodeJS.Timeout;
  let payloads = 0;
  const refused = { cut: 0, connack: new Map<number, number>(), suback: 0 };

  const connect = (clientId?: string) => mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, clientId });

  /** Sends each payload on a connection of its own and counts those the broker cut. */
  async function oneEach(items: Array<{ topic: string; payload: string | Buffer; retain?: boolean }>): Promise<void> {
    for (const { topic, payload, retain } of items) {
      const client = await connect();
      const closed = new Promise<boolean>((resolve) => {
        client.once('close', () => resolve(true));
        client.publish(topic, payload, { qos: 1, retain: retain ?? false }, (error) => !error && resolve(false));
      });
      payloads++;
      if (await within(closed, 10_000, `an answer to a publish on ${topic.slice(0, 80)}`)) refused.cut++;
      await client.endAsync(true);
    }
  }

  async function counterValue(): Promise<number> {
    const twin = (await (await agent.api('/api/v1/devices/default/counter-01/twin')).json()) as Record<string, { actual?: { value: string } }>;
    return Number(twin.count?.actual?.value ?? NaN);
  }

  beforeAll(async () => {
    agent = await spawnAgent(['--profiles', DEMO_PROFILES, '--data', dataDir]);
    port = Number(new URL(agent.mqttUrl).port);
    pid = agent.child.pid!;
    await waitFor('the counter counting', async () => (await counterValue()) >= 2, { timeoutMs: 10_000, intervalMs: 250 });
    startRss = rssKiB(pid);
    sampler = setInterval(() => (peakRss = Math.max(peakRss, rssKiB(pid))), 100);
  });

  afterAll(async () => {
    clearInterval(sampler);
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('survives more than 5,000 hostile payloads, then answers, shrinks back and keeps updating the demo devices', async () => {
    const next = random(14);
    const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)]!;
    const hostileTopic = () => `${DEVICE}/${pick(DEMO_IDS)}/${pick(REQUESTS)}`;

    // 1. Malformed JSON, wrong types, deep nesting and huge keys on the KubeEdge topics, one connection.
    const client: MqttClient = await connect('fuzz-payloads');
    const bodies: Array<() => string | Buffer> = [
      () => Buffer.from(Array.from({ length: 1 + Math.floor(next() * 300) }, () => Math.floor(next() * 256))),
      () => '{"event_id":"x","twin":{"count":{"actual":{"value":'.slice(0, Math.floor(next() * 50)),
      () => JSON.stringify({ twin: { count: { actual: { value: next() } } } }),
      () => JSON.stringify({ twin: [1, 2, 3], state: 7, event_id: 42 }),
      () => JSON.stringify({ twin: { count: null, status: { expected: { value: ['0'] } } }, state: { online: true } }),
      () => JSON.stringify({ twin: { count: { actual: { value: nested(2000) } } } }),
      () => `{"twin":${nested(20_000)}}`,
      () => JSON.stringify({ twin: { ['k'.repeat(20_000 + Math.floor(next() * 40_000))]: { actual: { value: '1' } } } }),
      () => JSON.stringify({ event_id: 'e'.repeat(70_000), twin: {} }),
      () => JSON.stringify({ state: 'x'.repeat(1000) }),
      () => 'null',
      () => '"just a string"',
      () => '\u0000\uffff\ud800',
    ];
    for (let i = 0; i < 2600; i++) {
      client.publish(hostileTopic(), pick(bodies)(), { qos: (i % 2) as 0 | 1 });
      payloads++;
      if (i % 200 === 0) await sleep(10);
    }
    // Topics that name no device, or nothing: unknown devices, deep and long topics.
    for (let i = 0; i < 400; i++) {
      const topics = [`${DEVICE}/ghost-${i}/twin/update`, `$hw/events/device/${'x/'.repeat(50)}twin/get`, `$hw/events/node/other/membership/get`, `tele/${'t'.repeat(30_000)}`, `$hw/events/device//twin/update`];
      client.publish(pick(topics), '{}', { qos: 0 });
      payloads++;
    }
    await request(client, `${DEVICE}/counter-01/twin/get`, '{"event_id":"after-payloads"}', `${DEVICE}/counter-01/twin/get/result`, 20_000);
    await client.endAsync();

    // 2. Packets over mqtt.maxPacketBytes: whole ones, and headers announcing 200 MiB.
    await oneEach(Array.from({ length: 40 }, () => ({ topic: hostileTopic(), payload: Buffer.alloc(MAX_PACKET + Math.floor(next() * MAX_PACKET)) })));
    for (let i = 0; i < 30; i++) {
      const raw = await rawConnect(port, `huge-${i}`);
      raw.socket.write(publishHeader('tele/huge', 200 * 1024 * 1024));
      raw.socket.write(Buffer.alloc(4096));
      await within(raw.closed, 5000, 'a packet announcing 200 MiB cut');
      payloads++;
      refused.cut++;
    }

    // 3. Forged answers, retained messages under $hw/, $SYS/.
    const forged = ['twin/update/result', 'twin/update/delta', 'twin/update/document', 'twin/get/result', 'state/update/result'];
    await oneEach([
      ...Array.from({ length: 150 }, () => ({ topic: `${DEVICE}/${pick(DEMO_IDS)}/${pick(forged)}`, payload: '{"twin":{"status":{"expected":{"value":"1"}}}}' })),
      ...Array.from({ length: 30 }, () => ({ topic: `$hw/events/node/test-node/membership/${pick(['updated', 'get/result'])}`, payload: '{"added_devices":[]}' })),
      ...Array.from({ length: 50 }, () => ({ topic: hostileTopic(), payload: '{}', retain: true })),
      ...Array.from({ length: 20 }, () => ({ topic: `$SYS/${next()}`, payload: 'x' })),
    ]);

    // 4. Retained messages beyond mqtt.maxRetainedMessages.
    const retainer = await connect('fuzz-retainer');
    for (let i = 0; i < MAX_RETAINED; i++) {
      retainer.publish(`retained/${i}`, `v${i}`, { qos: 0, retain: true });
      payloads++;
    }
    await retainer.publishAsync('retained/last-kept', 'x', { qos: 1, retain: false });
    await retainer.endAsync();
    await oneEach(Array.from({ length: 20 }, (_, i) => ({ topic: `retained/over-${i}`, payload: 'x'.repeat(100), retain: true })));

    // 5. Subscriptions beyond mqtt.maxSubscriptionsPerClient, and filters with too many levels.
    const subscriber = await connect('fuzz-subscriber');
    subscriber.on('packetreceive', (packet) => {
      if (packet.cmd === 'suback') refused.suback += (packet.granted as number[]).filter((code) => code === 0x80).length;
    });
    for (let batch = 0; batch < 11; batch++) {
      const filters = Array.from({ length: 100 }, (_, i) => `$hw/events/device/+/dev-${batch}-${i}/#`);
      await new Promise<void>((resolve) => subscriber.subscribe(filters, { qos: 0 }, () => resolve()));
      payloads += filters.length;
    }
    await subscriber.endAsync();
    for (let i = 0; i < 20; i++) {
      const deep = await connect();
      const closed = new Promise<void>((resolve) => deep.once('close', () => resolve()));
      deep.subscribe('a/'.repeat(150) + 'b', () => undefined);
      await within(closed, 5000, 'a subscription 151 levels deep refused');
      payloads++;
      refused.cut++;
    }

    // 6. Connections up to mqtt.maxConnections and beyond; idle ones with keepalive 0; garbage after CONNECT.
    await sleep(500);
    const held: RawConnection[] = [];
    for (let i = 0; i < MAX_CONNECTIONS + 50; i++) {
      const connection = await rawConnect(port, `crowd-${i}`);
      held.push(connection);
      payloads++;
      refused.connack.set(connection.returnCode ?? -1, (refused.connack.get(connection.returnCode ?? -1) ?? 0) + 1);
    }
    for (const { socket } of held) socket.destroy();
    await Promise.all(held.map((c) => c.closed));
    await sleep(200);
    for (let i = 0; i < 300; i++) {
      const idle = await rawConnect(port, `idle-${i}`, 0);
      refused.connack.set(idle.returnCode ?? -1, (refused.connack.get(idle.returnCode ?? -1) ?? 0) + 1);
      await within(idle.closed, 5000, 'an idle connection with keepalive 0 refused');
      payloads++;
    }
    for (let i = 0; i < 100; i++) {
      const garbage = await rawConnect(port, `garbage-${i}`);
      expect(garbage.returnCode).toBe(0);
      garbage.socket.write(Buffer.from(Array.from({ length: 64 }, () => Math.floor(next() * 256))));
      garbage.socket.end();
      await garbage.closed;
      payloads++;
    }

    // What the broker refused, as the clients saw it.
    expect(payloads).toBeGreaterThan(5000);
    expect(refused.cut).toBeGreaterThanOrEqual(40 + 30 + 150 + 30 + 50 + 20 + 20 + 20);
    expect(refused.suback).toBe(11 * 100 - MAX_SUBSCRIPTIONS);
    // With the demo profiles the agent itself holds no connection on its broker.
    expect(refused.connack.get(0)).toBe(MAX_CONNECTIONS);
    expect(refused.connack.get(3)).toBe(50);
    expect(refused.connack.get(2)).toBe(300);

    // Alive, answering, back to its size, and the demo devices still update.
    expect(agent.child.exitCode).toBeNull();
    expect((await fetch(`${agent.apiUrl}/healthz`)).status).toBe(200);
    const after = await connect('fuzz-after');
    const answer = await request(after, `${DEVICE}/counter-01/twin/get`, '{"event_id":"after"}', `${DEVICE}/counter-01/twin/get/result`);
    expect(answer.event_id).toBe('after');
    await after.endAsync();
    const rss = await waitFor('the agent’s RSS back under 1.5× its start', () => {
      const now = rssKiB(pid);
      return now < startRss * 1.5 ? now : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500 }).catch(() => rssKiB(pid));
    console.log(`fuzz: ${payloads} hostile payloads; agent RSS ${Math.round(startRss / 1024)} MiB at start, ${Math.round(peakRss / 1024)} MiB at peak, ${Math.round(rss / 1024)} MiB after`);
    expect(rss).toBeLessThan(startRss * 1.5);
    const counted = await counterValue();
    await waitFor('the counter counting on', async () => (await counterValue()) >= counted + 2, { timeoutMs: 10_000, intervalMs: 250 });
  }, 300_000);
});
