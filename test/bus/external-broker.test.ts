/**
 * The agent on an external broker: a real Mosquitto on a free loopback port, the agent
 * connected to it with `mqttUrl`, and devices talking to Mosquitto, never to the agent.
 */
import { rmSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { connectClient, request } from '../support/mqtt.js';
import { mosquittoRequest, startMosquitto, type MosquittoBroker } from '../support/mosquitto.js';
import { waitFor } from '../support/wait.js';

const SENSOR = '$hw/events/device/default/sensor-01';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const value = (v: string) => ({ value: v, metadata: { timestamp: expect.any(Number) } });

describe('agent on an external Mosquitto broker', () => {
  let broker: MosquittoBroker;
  let agent: TestAgent;
  let client: MqttClient;

  beforeAll(async () => {
    broker = await startMosquitto();
    agent = await startTestAgent({ mqttUrl: broker.url });
    client = await connectClient(broker.url, 'external-broker-test');
  });

  afterAll(async () => {
    await client?.endAsync();
    await agent?.stop();
    await broker?.stop();
  });

  it('connects to mosquitto and reports its url as the bus', async () => {
    expect(agent.mqttUrl).toBe(broker.url);
    await waitFor('the agent to show up in the mosquitto log', () => broker.log().includes('as edge-agent-test-node'));
  });

  it('twin/update → result, document and delta; twin/get shows the update', async () => {
    const seen: Array<{ topic: string; body: Record<string, unknown> }> = [];
    const onMessage = (topic: string, payload: Buffer) => seen.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
    client.on('message', onMessage);
    await client.subscribeAsync(`${SENSOR}/twin/update/+`, { qos: 1 });
    try {
      await client.publishAsync(`${SENSOR}/twin/update`, JSON.stringify({ event_id: 'ext-1', timestamp: Date.now(), twin: { temperature: { actual: { value: '19.5' } } } }), { qos: 1 });
      await waitFor('result, document and delta through mosquitto', () => seen.length >= 3);
    } finally {
      client.off('message', onMessage);
      await client.unsubscribeAsync(`${SENSOR}/twin/update/+`);
    }
    expect(seen.map((m) => m.topic.split('/').pop())).toEqual(['result', 'document', 'delta']);
    expect(seen[0]!.body).toEqual({
      event_id: 'ext-1',
      timestamp: expect.any(Number),
      twin: { temperature: { actual: value('19.5'), optional: true, metadata: { type: 'float' } } },
    });
    expect(seen[1]!.body.event_id).toBe('ext-1');
    expect(seen[2]!.body).toMatchObject({ event_id: expect.stringMatching(UUID), delta: { switch: 'OFF' } });

    const get = await request(client, `${SENSOR}/twin/get`, '{"event_id":"ext-get"}', `${SENSOR}/twin/get/result`);
    expect(get.event_id).toBe('ext-get');
    expect((get.twin as Record<string, unknown>).temperature).toEqual({ actual: value('19.5'), optional: true, metadata: { type: 'float' } });
  });

  it('answers bad input with an error Result and keeps working', async () => {
    const error = await request(client, `${SENSOR}/twin/update`, '{"twin":', `${SENSOR}/twin/update/result`);
    expect(error).toEqual({ event_id: '', timestamp: expect.any(Number), code: 400, reason: expect.stringMatching(/Unmarshal/) });
    const ok = await request(client, `${SENSOR}/twin/update`, '{"event_id":"ext-2","twin":{"count":{"actual":{"value":"3"}}}}', `${SENSOR}/twin/update/result`);
    expect(ok.event_id).toBe('ext-2');
    expect(ok).not.toHaveProperty('code');
  });

  it('serves mosquitto_pub / mosquitto_sub clients too', async () => {
    const [reply] = await mosquittoRequest(broker.url, `${SENSOR}/twin/get`, '{"event_id":"ext-mosq"}', `${SENSOR}/twin/get/result`);
    expect(reply!.body.event_id).toBe('ext-mosq');
    expect((reply!.body.twin as Record<string, { actual?: { value: string } }>).count!.actual!.value).toBe('3');
  });

  it('publishes its results at QoS 1, as EdgeCore does on an external broker', async () => {
    // EdgeCore's eventbus publishes to an external broker with PubCli.Publish(topic, 1, false, payload).
    const qos = new Promise<number>((resolve) => {
      client.once('message', (_topic, _payload, packet) => resolve(packet.qos));
    });
    await client.subscribeAsync(`${SENSOR}/twin/get/result`, { qos: 1 });
    try {
      await client.publishAsync(`${SENSOR}/twin/get`, '{"event_id":"qos"}', { qos: 1 });
      expect(await qos).toBe(1);
    } finally {
      await client.unsubscribeAsync(`${SENSOR}/twin/get/result`);
    }
  });
});

describe('agent restarting on an external Mosquitto broker', () => {
  let broker: MosquittoBroker;
  let client: MqttClient | undefined;
  const agents: TestAgent[] = [];
  const dataDir = tempDir();

  beforeAll(async () => {
    broker = await startMosquitto();
  });

  afterEach(async () => {
    await client?.endAsync();
    client = undefined;
    for (const agent of agents.splice(0)) await agent.stop();
  });

  afterAll(async () => {
    await broker?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('applies a QoS 1 twin/update sent while it was offline, once it is back (persistent session)', async () => {
    // First run: the agent creates its persistent session (clean: false) and its subscriptions.
    agents.push(await startTestAgent({ mqttUrl: broker.url, dataDir }));
    await agents.pop()!.stop();

    // While it is away, a device reports a value; mosquitto queues it for the agent's session.
    client = await connectClient(broker.url, 'offline-publisher');
    await client.publishAsync(`${SENSOR}/twin/update`, JSON.stringify({ event_id: 'while-offline', twin: { temperature: { actual: { value: '42.5' } } } }), { qos: 1 });

    const agent = await startTestAgent({ mqttUrl: broker.url, dataDir });
    agents.push(agent);
    const temperature = await waitFor('the queued update to be applied', async () => {
      const twin = (await (await agent.api('/api/v1/devices/default/sensor-01/twin')).json()) as Record<string, { actual?: { value: string } }>;
      return twin.temperature?.actual?.value;
    });
    expect(temperature).toBe('42.5');
  });
});
