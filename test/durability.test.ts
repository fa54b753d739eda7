/**
 * What the agent acknowledged survives kill -9: MQTT QoS 1 twin updates (PUBACK) and API
 * writes (HTTP 200) stream in from several clients, the agent process is SIGKILLed mid-stream,
 * and after a restart on the same data directory every acknowledged update is in the twin.
 */
import { rmSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from './support/agent.js';
import type { ApiFetch } from './support/api.js';
import { connectClient } from './support/mqtt.js';

const DEVICE = 'default/sensor-01';
const PUBLISHERS = 4;
const IN_FLIGHT_PER_PUBLISHER = 16;
const KILL_AFTER_ACKS = 3000;
/** Every update writes a key of its own, so the device may hold that many keys outside its model. */
const MANY_KEYS = { EDGE_AGENT_TWIN__MAX_EXTRA_PROPERTIES: '10000' };

interface Acks {
  mqtt: Map<string, string>;
  api: Map<string, string>;
}

async function publishUntilKilled(client: MqttClient, publisher: number, acks: Acks, stopped: () => boolean): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (!stopped()) {
      const key = `p${publisher}-${next++}`;
      const value = `v${next}`;
      const payload = JSON.stringify({ event_id: key, timestamp: Date.now(), twin: { [key]: { actual: { value }, metadata: { type: 'string' } } } });
      try {
        await client.publishAsync(`$hw/events/device/${DEVICE}/twin/update`, payload, { qos: 1 });
        acks.mqtt.set(key, value);
      } catch {
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT_PER_PUBLISHER }, worker));
}

async function writeDesiredUntilKilled(api: ApiFetch, acks: Acks, stopped: () => boolean): Promise<void> {
  for (let i = 0; !stopped(); i++) {
    const key = `api-${i}`;
    try {
      const response = await api(`/api/v1/devices/${DEVICE}/twin/desired`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ [key]: `d${i}` }),
      });
      if (response.ok) acks.api.set(key, `d${i}`);
    } catch {
      return;
    }
  }
}

describe('durability', () => {
  const dataDir = tempDir();
  const processes: AgentProcess[] = [];
  afterAll(() => {
    for (const p of processes) p.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged update after kill -9', async () => {
    const first = await spawnAgent(['--data', dataDir, '--profiles', TEST_PROFILES], MANY_KEYS);
    processes.push(first);
    const clients = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connectClient(first.mqttUrl, `durability-${i}`)));
    const acks: Acks = { mqtt: new Map(), api: new Map() };
    let killed = false;
    const streams = [
      ...clients.map((client, i) => publishUntilKilled(client, i, acks, () => killed)),
      writeDesiredUntilKilled(first.api, acks, () => killed),
    ];
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (acks.mqtt.size + acks.api.size < KILL_AFTER_ACKS) return;
        clearInterval(poll);
        first.child.kill('SIGKILL');
        killed = true;
        resolve();
      }, 5);
    });
    expect(await first.exited).toBe('SIGKILL');
    for (const client of clients) client.end(true);
    await Promise.all(streams);

    const second = await spawnAgent(['--data', dataDir, '--profiles', TEST_PROFILES], MANY_KEYS);
    processes.push(second);
    const twin = (await (await second.api(`/api/v1/devices/${DEVICE}/twin`)).json()) as Record<
      string,
      { actual?: { value: string }; expected?: { value: string } }
    >;
    const lostMqtt = [...acks.mqtt].filter(([key, value]) => twin[key]?.actual?.value !== value);
    const lostApi = [...acks.api].filter(([key, value]) => twin[key]?.expected?.value !== value);
    const persisted = Object.keys(twin).filter((k) => /^(p\d+|api)-/.test(k)).length;
    console.log(`durability: ${acks.mqtt.size} MQTT and ${acks.api.size} API updates acknowledged before kill -9; ${persisted} in the twin after restart`);
    expect(acks.mqtt.size).toBeGreaterThan(0);
    expect(acks.api.size).toBeGreaterThan(0);
    expect(lostMqtt).toEqual([]);
    expect(lostApi).toEqual([]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
