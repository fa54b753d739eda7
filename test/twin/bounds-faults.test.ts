/**
 * Bounded twins (issue 15): keys a DeviceModel does not define are taken up to
 * `twin.maxExtraProperties` and refused whole past it, through MQTT and the API; a `twin/get`
 * of a twin too large is answered with a small 413; deleted keys are purged after
 * `twin.tombstoneTtlMs`, at run time and at start; the history of a device stays bounded as a
 * whole. The real agent in this process (embedded broker, SQLite, API) and a real MQTT client.
 */
import BetterSqlite3 from 'better-sqlite3';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { twinDatabase } from '../../src/paths.js';
import { startTestAgent, tempDir, type TestAgent, type TestAgentOptions } from '../support/agent.js';
import { collect, connectClient, request } from '../support/mqtt.js';
import { sleep, waitFor } from '../support/wait.js';

/** A two-property model, as in the issue; the protocol is served by no mapper, so only the test writes the twin. */
const PROFILE = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: meter, namespace: default}
spec:
  properties:
    - {name: power, type: FLOAT, accessMode: ReadOnly}
    - {name: relay, type: STRING, accessMode: ReadWrite}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: meter-01, namespace: default}
spec:
  deviceModelRef: {name: meter}
  protocol: {protocolName: not-served-in-tests}
  properties:
    - {name: power}
    - {name: relay, desired: {value: "OFF"}}
`;
const ID = 'default/meter-01';
const UPDATE = `$hw/events/device/${ID}/twin/update`;
const UPDATE_RESULT = `${UPDATE}/result`;

let profiles: string;
let dataDir: string;
let agent: TestAgent | undefined;
let client: MqttClient | undefined;

async function start(config: TestAgentOptions['config'] = {}): Promise<TestAgent> {
  // Large enough for 5,000 keys in one message, as the messages carried.
  const mqtt = { maxPayloadBytes: 1_000_000, maxPacketBytes: 2_000_000 };
  agent = await startTestAgent({ profiles: [profiles], dataDir, config: { mqtt, ...config } });
  client = await connectClient(agent.mqttUrl);
  return agent;
}

async function stop(): Promise<void> {
  await client?.endAsync();
  await agent?.stop();
  client = undefined;
  agent = undefined;
}

function newDataDir(): void {
  profiles = tempDir('edge-agent-profiles-');
  dataDir = tempDir();
  writeFileSync(join(profiles, 'meter.yaml'), PROFILE);
}

afterEach(async () => {
  await stop();
  rmSync(profiles, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

/** `{key: {actual: {value}}}` for every key. */
function reports(keys: string[], value = '1'): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, { actual: { value } }]));
}

function keys(prefix: string, count: number, from = 0): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${from + i}`);
}

async function update(twin: Record<string, unknown>, eventId = 'e'): Promise<Record<string, unknown>> {
  return request(client!, UPDATE, JSON.stringify({ event_id: eventId, twin }), UPDATE_RESULT);
}

function readDb<T>(sql: string, ...params: unknown[]): T {
  const db = new BetterSqlite3(twinDatabase(dataDir), { readonly: true });
  try {
    return db.prepare(sql).get(...params) as T;
  } finally {
    db.close();
  }
}

const storedKeys = () => readDb<{ n: number }>('SELECT COUNT(*) AS n FROM twin WHERE device_id = ?', ID).n;
const historyRows = () => readDb<{ n: number }>('SELECT COUNT(*) AS n FROM twin_history').n;
const storedType = (key: string) => readDb<{ type: string } | undefined>('SELECT type FROM twin WHERE device_id = ? AND key = ?', ID, key)?.type;

describe('properties the DeviceModel does not define', () => {
  it('20 messages offering 100,010 of them are each refused whole with the reason; 32 are taken, the 33rd refused', async () => {
    newDataDir();
    const { agent: running } = await start();
    const results = await collect(client!, UPDATE_RESULT);
    for (let message = 0; message < 20; message++) {
      const count = message < 10 ? 5001 : 5000;
      await client!.publishAsync(UPDATE, JSON.stringify({ event_id: `flood-${message}`, twin: reports(keys(`k${message}-`, count)) }), { qos: 1 });
    }
    await waitFor('20 results', () => results.messages.length === 20);
    await results.stop();
    for (const [message, { body }] of results.messages.entries()) {
      expect(body).toMatchObject({
        event_id: `flood-${message}`,
        code: 400,
        reason: `Update rejected: ${ID} would have ${message < 10 ? 5001 : 5000} properties its DeviceModel does not define, over the limit of 32 (twin.maxExtraProperties)`,
      });
    }
    expect([...running.twins.get(ID)!.twin.keys()].sort()).toEqual(['power', 'relay']);
    await running.twins.flushed();
    expect(storedKeys()).toBe(2);

    // Up to the limit they are taken, KubeEdge-style; the model's own keys never count.
    const taken = await update({ ...reports(keys('extra-', 32)), power: { actual: { value: '1.5' } } }, 'fill');
    expect(Object.keys(taken.twin as object)).toHaveLength(33);
    const refused = await update(reports(['one-more', 'extra-0']), 'over');
    expect(refused).toMatchObject({ event_id: 'over', code: 400, reason: expect.stringContaining('would have 33 properties its DeviceModel does not define') });
    expect(running.twins.get(ID)!.twin.has('one-more')).toBe(false);
    // Keys already there still change.
    expect(await update(reports(['extra-0', 'relay'], '7'), 'same-keys')).toMatchObject({ twin: { 'extra-0': { actual: { value: '7' } } } });
  });

  it('the API refuses 1,000 of them with 400 and the reason, and takes 32', async () => {
    newDataDir();
    const { api } = await start();
    const put = (values: Record<string, string>) => api(`/api/v1/devices/${ID}/twin/desired`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(values) });
    const many = await put(Object.fromEntries(keys('api-', 1000).map((key) => [key, 'x'])));
    expect(many.status).toBe(400);
    expect(await many.json()).toEqual({ code: 400, reason: `Update rejected: ${ID} would have 1000 properties its DeviceModel does not define, over the limit of 32 (twin.maxExtraProperties)` });
    expect((await put(Object.fromEntries(keys('api-', 32).map((key) => [key, 'x'])))).status).toBe(200);
    expect((await put({ 'api-32': 'x' })).status).toBe(400);
  });
});

describe('twin/get of a twin too large', () => {
  it('a 17-byte request is answered with a small 413 naming the limit, not with the whole twin', async () => {
    newDataDir();
    const { agent: running } = await start({ twin: { maxExtraProperties: 1000 } });
    // 600 keys of 512-character values: some 360 KB of twin, over the default 256 KiB.
    const long = 'v'.repeat(512);
    for (let batch = 0; batch < 6; batch++) {
      expect(await update(reports(keys('big-', 100, batch * 100), long))).toHaveProperty('twin');
    }
    expect(running.twins.get(ID)!.twin.size).toBe(602);

    const getResult = `$hw/events/device/${ID}/twin/get/result`;
    const answers: Buffer[] = [];
    client!.on('message', (topic, payload) => topic === getResult && answers.push(payload));
    await client!.subscribeAsync(getResult);
    const ask = Buffer.from('{"event_id":"g1"}');
    expect(ask.length).toBe(17);
    await client!.publishAsync(`$hw/events/device/${ID}/twin/get`, ask, { qos: 1 });
    const [answer] = await waitFor('the twin/get answer', () => answers.length > 0 && answers);
    expect(answer!.length).toBeLessThan(512);
    expect(JSON.parse(answer!.toString())).toMatchObject({ event_id: 'g1', code: 413, reason: `the twin of ${ID} is larger than 262144 bytes (twin.maxGetBytes)` });

    // Back under the limit, the whole twin is answered again.
    await update(Object.fromEntries(keys('big-', 300).map((key) => [key, null])));
    await client!.publishAsync(`$hw/events/device/${ID}/twin/get`, '{"event_id":"g2"}', { qos: 1 });
    await waitFor('the second answer', () => answers.length > 1);
    const whole = JSON.parse(answers[1]!.toString()) as { twin: Record<string, unknown> };
    expect(Object.keys(whole.twin)).toHaveLength(302);
  });
});

describe('deleted keys', () => {
  it('are purged after twin.tombstoneTtlMs with their history, when the device is next touched and at start', async () => {
    newDataDir();
    const { agent: running } = await start({ twin: { tombstoneTtlMs: 1000 } });
    for (const value of ['1', '2', '3']) await update(reports(['gone-soon', 'gone-at-start'], value));
    await update({ 'gone-soon': null, 'gone-at-start': null, relay: null });
    await running.twins.flushed();
    expect(storedType('gone-soon')).toBe('deleted');
    expect(historyRows()).toBe(6);

    await sleep(1100);
    await update(reports(['power'], '2'));
    await running.twins.flushed();
    expect(running.twins.get(ID)!.twin.has('gone-soon')).toBe(false);
    expect(running.twins.get(ID)!.twin.has('gone-at-start')).toBe(false);
    expect(storedType('gone-soon')).toBeUndefined();
    // The model's own deleted key stays deleted: purging it would seed it again at the next start.
    expect(storedType('relay')).toBe('deleted');
    expect(historyRows()).toBe(1);

    // At start: a tombstone whose TTL passed while the agent was stopped is gone before anything touches the device.
    await update(reports(['stopped-away'], '1'));
    await update({ 'stopped-away': null });
    await stop();
    expect(storedType('stopped-away')).toBe('deleted');
    await sleep(1100);
    const restarted = await start({ twin: { tombstoneTtlMs: 1000 } });
    await restarted.agent.twins.flushed();
    expect(restarted.agent.twins.get(ID)!.twin.has('stopped-away')).toBe(false);
    expect(storedType('stopped-away')).toBeUndefined();
    expect(storedType('relay')).toBe('deleted');
  });

  it('hold slots among the extra properties until purged; a new key takes the oldest one, so keys and history stay bounded', async () => {
    newDataDir();
    const historySize = 3;
    const maxExtraProperties = 4;
    const { agent: running } = await start({ twin: { historySize, maxExtraProperties } });
    for (let round = 0; round < 5; round++) {
      const added = keys(`r${round}-`, maxExtraProperties);
      for (const value of ['1', '2', '3']) expect(await update(reports([...added, 'power'], value))).toHaveProperty('twin');
      expect(await update(Object.fromEntries(added.map((key) => [key, null])))).toHaveProperty('twin');
    }
    await running.twins.flushed();
    // 2 model keys and 4 tombstones of the last round; history for those 6 keys only.
    expect(storedKeys()).toBe(2 + maxExtraProperties);
    expect(historyRows()).toBeLessThanOrEqual(historySize * (2 + maxExtraProperties));
    expect([...running.twins.get(ID)!.twin.keys()].sort()).toEqual(['power', 'r4-0', 'r4-1', 'r4-2', 'r4-3', 'relay']);
  });
});
