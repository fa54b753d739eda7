/**
 * The KubeEdge `$hw/events/…` protocol on the embedded broker, spoken by real MQTT clients:
 * first the `mqtt` npm client, then Mosquitto's command-line clients as independent processes.
 * Topics are spelled out literally here, so the tests check the wire protocol, not the code's
 * own topic table.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, type TestAgent } from '../support/agent.js';
import { collect, connectClient, request } from '../support/mqtt.js';
import { mosquittoPub, mosquittoRequest, mosquittoSub } from '../support/mosquitto.js';
import { waitFor } from '../support/wait.js';

const SENSOR = '$hw/events/device/default/sensor-01';
const PLANT_SENSOR = '$hw/events/device/plant-a/sensor-02';
const UNKNOWN = '$hw/events/device/default/no-such-device';
const MEMBERSHIP = '$hw/events/node/test-node/membership/get';
const MAX_PAYLOAD = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** KubeEdge ≥ 1.19 (the default `cloud.kubeedgeVersion`): RFC 3339 in UTC, whole seconds. */
const LAST_ONLINE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const UNMARSHAL = /^Unmarshal update request body failed, please check the request$/;

const anyTimestamp = { timestamp: expect.any(Number) };
/** A twin value as the agent sends it: the value and `metadata.timestamp`. */
const value = (v: string) => ({ value: v, metadata: anyTimestamp });

function updatePayload(eventId: string, twin: Record<string, unknown>): string {
  return JSON.stringify({ event_id: eventId, timestamp: Date.now(), twin });
}

/** An error Result: exactly `{event_id, timestamp, code, reason}`. */
function expectError(body: Record<string, unknown>, expected: { eventId: string; code: number; reason: RegExp }): void {
  expect(Object.keys(body).sort()).toEqual(['code', 'event_id', 'reason', 'timestamp']);
  expect(body.event_id).toBe(expected.eventId);
  expect(body.code).toBe(expected.code);
  expect(typeof body.timestamp).toBe('number');
  expect(body.reason).toMatch(expected.reason);
}

/** Every key anywhere in a JSON value; to show that no versions leak out. */
function allKeys(json: unknown): string[] {
  if (!json || typeof json !== 'object') return [];
  return Object.entries(json).flatMap(([k, v]) => [k, ...allKeys(v)]);
}

describe('KubeEdge device protocol on the embedded broker (mqtt.js client)', () => {
  let agent: TestAgent;
  let client: MqttClient;

  beforeAll(async () => {
    agent = await startTestAgent({ maxPayloadBytes: MAX_PAYLOAD });
    client = await connectClient(agent.mqttUrl, 'bus-test-client');
  });

  afterAll(async () => {
    await client?.endAsync();
    await agent?.stop();
  });

  /** Publishes a twin/update and returns what came on `twin/update/+` until a twin/get round trip. */
  async function twinUpdate(device: string, payload: string) {
    const updates = await collect(client, `${device}/twin/update/+`);
    try {
      await client.publishAsync(`${device}/twin/update`, payload, { qos: 1 });
      await waitFor(`a result on ${device}/twin/update/result`, () => updates.messages.some((m) => m.topic.endsWith('/result')));
      // The agent publishes result, document and delta in one go: once a later twin/get is
      // answered, everything that belonged to the update has arrived.
      await request(client, `${device}/twin/get`, '{"event_id":"barrier"}', `${device}/twin/get/result`);
      const prefix = `${device}/twin/update/`;
      return updates.messages.filter((m) => m.topic.startsWith(prefix)).map((m) => ({ kind: m.topic.slice(prefix.length), body: m.body }));
    } finally {
      await updates.stop();
    }
  }

  async function twinGet(device: string, eventId: string) {
    return request(client, `${device}/twin/get`, JSON.stringify({ event_id: eventId }), `${device}/twin/get/result`);
  }

  describe('twin/update', () => {
    it('answers actual values with result, then document, then delta for the desired value that differs', async () => {
      const messages = await twinUpdate(SENSOR, updatePayload('update-1', { temperature: { actual: { value: '21.5' } }, count: { actual: { value: '7' } } }));

      expect(messages.map((m) => m.kind)).toEqual(['result', 'document', 'delta']);
      const [result, document, delta] = messages.map((m) => m.body);

      // The result echoes the event_id and shows only what the update touched: no expected, no versions.
      expect(result).toEqual({
        event_id: 'update-1',
        timestamp: expect.any(Number),
        twin: {
          temperature: { actual: value('21.5'), optional: true, metadata: { type: 'float' } },
          count: { actual: value('7'), optional: true, metadata: { type: 'int' } },
        },
      });

      // The document has the twin before (no reported value yet) and after, under the same event_id.
      expect(document).toEqual({
        event_id: 'update-1',
        timestamp: expect.any(Number),
        twin: {
          temperature: {
            last: { optional: true, metadata: { type: 'float' } },
            current: { actual: value('21.5'), optional: true, metadata: { type: 'float' } },
          },
          count: {
            last: { optional: true, metadata: { type: 'int' } },
            current: { actual: value('7'), optional: true, metadata: { type: 'int' } },
          },
        },
      });

      // `switch` is desired "OFF" by the manifest and has no reported value: the delta, with an event_id of its own.
      expect(delta).toEqual({
        event_id: expect.stringMatching(UUID),
        timestamp: expect.any(Number),
        twin: { switch: { expected: value('OFF'), optional: true, metadata: { type: 'string' } } },
        delta: { switch: 'OFF' },
      });
    });

    it('shows the previous value as `last` in the document', async () => {
      const messages = await twinUpdate(SENSOR, updatePayload('update-2', { temperature: { actual: { value: '22.75' } } }));
      const document = messages.find((m) => m.kind === 'document')!.body as { twin: Record<string, { last: { actual: { value: string } }; current: { actual: { value: string } } }> };
      expect(document.twin.temperature!.last.actual.value).toBe('21.5');
      expect(document.twin.temperature!.current.actual.value).toBe('22.75');
    });

    it('sends no delta once the reported value matches the desired one, and a new one when the desire changes', async () => {
      const inSync = await twinUpdate(SENSOR, updatePayload('report-off', { switch: { actual: { value: 'OFF' } } }));
      expect(inSync.map((m) => m.kind)).toEqual(['result', 'document']);

      const desired = await twinUpdate(SENSOR, updatePayload('desire-on', { switch: { expected: { value: 'ON' } } }));
      expect(desired.map((m) => m.kind)).toEqual(['result', 'document', 'delta']);
      expect(desired[0]!.body).toEqual({
        event_id: 'desire-on',
        timestamp: expect.any(Number),
        twin: { switch: { expected: value('ON'), optional: true, metadata: { type: 'string' } } },
      });
      const delta = desired[2]!.body;
      expect(delta.event_id).toMatch(UUID);
      expect(delta.event_id).not.toBe('desire-on');
      expect(delta.delta).toEqual({ switch: 'ON' });
      expect(delta.twin).toEqual({ switch: { expected: value('ON'), actual: value('OFF'), optional: true, metadata: { type: 'string' } } });
    });
  });

  it('twin/get answers with the full twin and no versions', async () => {
    const result = await twinGet(SENSOR, 'get-1');
    expect(result.event_id).toBe('get-1');
    expect(typeof result.timestamp).toBe('number');
    const twin = result.twin as Record<string, { optional: boolean; metadata: { type: string } }>;
    expect(Object.keys(twin).sort()).toEqual(['count', 'enabled', 'switch', 'temperature']);
    expect(twin.temperature).toEqual({ actual: value('22.75'), optional: true, metadata: { type: 'float' } });
    expect(twin.count).toEqual({ actual: value('7'), optional: true, metadata: { type: 'int' } });
    expect(twin.switch).toEqual({ expected: value('ON'), actual: value('OFF'), optional: true, metadata: { type: 'string' } });
    expect(twin.enabled).toEqual({ optional: true, metadata: { type: 'boolean' } });
    expect(allKeys(result).filter((k) => k.endsWith('_version'))).toEqual([]);
  });

  describe('state/update', () => {
    it('answers with {device: {name, state, lastOnlineTime}} under a new event_id', async () => {
      const result = await request(client, `${SENSOR}/state/update`, JSON.stringify({ event_id: 'state-1', timestamp: Date.now(), state: 'online' }), `${SENSOR}/state/update/result`);
      expect(result).toEqual({
        event_id: expect.stringMatching(UUID),
        timestamp: expect.any(Number),
        device: { name: 'sensor-01', state: 'online', lastOnlineTime: expect.stringMatching(LAST_ONLINE_TIME) },
      });
    });

    it('keeps the case given and leaves lastOnlineTime out for a state that is not online', async () => {
      const result = await request(client, `${SENSOR}/state/update`, JSON.stringify({ state: 'Offline' }), `${SENSOR}/state/update/result`);
      expect(result.device).toEqual({ name: 'sensor-01', state: 'Offline' });
    });
  });

  it('membership/get lists the devices of this node only, without twins', async () => {
    const result = await request(client, MEMBERSHIP, JSON.stringify({ event_id: 'members-1' }), `${MEMBERSHIP}/result`);
    expect(result.event_id).toBe('members-1');
    const devices = result.devices as Array<Record<string, unknown>>;
    expect(devices.map((d) => d.id).sort()).toEqual(['default/sensor-01', 'plant-a/sensor-02']);
    const sensor = devices.find((d) => d.id === 'default/sensor-01')!;
    // The state is the one the state/update tests above left.
    expect(sensor).toMatchObject({ name: 'sensor-01', description: 'test-sensor', state: 'Offline' });
    for (const device of devices) expect(device).not.toHaveProperty('twin');
  });

  describe('a namespaced device (plant-a/sensor-02)', () => {
    it('is addressed by namespace and name on its own topics', async () => {
      const messages = await twinUpdate(PLANT_SENSOR, updatePayload('plant-1', { temperature: { actual: { value: '18.25' } } }));
      // Nothing is desired on this device, so there is no delta.
      expect(messages.map((m) => m.kind)).toEqual(['result', 'document']);
      expect(messages[0]!.body).toEqual({
        event_id: 'plant-1',
        timestamp: expect.any(Number),
        twin: { temperature: { actual: value('18.25'), optional: true, metadata: { type: 'float' } } },
      });
      const get = await twinGet(PLANT_SENSOR, 'plant-get');
      expect(get.twin).toEqual({ temperature: { actual: value('18.25'), optional: true, metadata: { type: 'float' } } });
    });

    it('is not the same device as default/sensor-02', async () => {
      const result = await twinGet('$hw/events/device/default/sensor-02', 'wrong-ns');
      expectError(result, { eventId: 'wrong-ns', code: 404, reason: /default\/sensor-02/ });
    });
  });

  describe('bad input gets an error Result on the matching result topic', () => {
    /** The agent still answers, and the client was not disconnected. */
    async function expectStillWorking(): Promise<void> {
      expect(client.connected).toBe(true);
      const result = await request(
        client,
        `${SENSOR}/twin/update`,
        updatePayload('still-working', { enabled: { actual: { value: 'true' } } }),
        `${SENSOR}/twin/update/result`,
      );
      expect(result).toEqual({
        event_id: 'still-working',
        timestamp: expect.any(Number),
        twin: { enabled: { actual: value('true'), optional: true, metadata: { type: 'boolean' } } },
      });
    }

    it('malformed JSON on twin/update', async () => {
      const result = await request(client, `${SENSOR}/twin/update`, '{"event_id":"x","twin":{', `${SENSOR}/twin/update/result`);
      expectError(result, { eventId: '', code: 400, reason: UNMARSHAL });
      await expectStillWorking();
    });

    it('malformed JSON on twin/get', async () => {
      const result = await request(client, `${SENSOR}/twin/get`, 'not json', `${SENSOR}/twin/get/result`);
      expectError(result, { eventId: '', code: 400, reason: /Unmarshal/ });
      await expectStillWorking();
    });

    it('a twin/update without `twin`', async () => {
      const result = await request(client, `${SENSOR}/twin/update`, '{"event_id":"no-twin"}', `${SENSOR}/twin/update/result`);
      expectError(result, { eventId: 'no-twin', code: 400, reason: /^Update twin error, key:twin does not exist$/ });
      await expectStillWorking();
    });

    it('a payload above the size limit', async () => {
      const payload = updatePayload('too-big', { switch: { actual: { value: 'x'.repeat(MAX_PAYLOAD) } } });
      expect(Buffer.byteLength(payload)).toBeGreaterThan(MAX_PAYLOAD);
      const result = await request(client, `${SENSOR}/twin/update`, payload, `${SENSOR}/twin/update/result`);
      expectError(result, { eventId: '', code: 400, reason: new RegExp(`exceeds the limit of ${MAX_PAYLOAD} bytes`) });
      await expectStillWorking();
    });

    it('a payload of exactly the size limit is still accepted', async () => {
      const base = updatePayload('', { count: { actual: { value: '8' } } });
      const eventId = 'e'.repeat(MAX_PAYLOAD - Buffer.byteLength(base));
      const payload = updatePayload(eventId, { count: { actual: { value: '8' } } });
      expect(Buffer.byteLength(payload)).toBe(MAX_PAYLOAD);
      const result = await request(client, `${SENSOR}/twin/update`, payload, `${SENSOR}/twin/update/result`);
      expect(result.event_id).toBe(eventId);
      expect(result.twin).toEqual({ count: { actual: value('8'), optional: true, metadata: { type: 'int' } } });
    });

    it('a value that is a JSON number instead of a string', async () => {
      const payload = JSON.stringify({ event_id: 'number-value', twin: { temperature: { actual: { value: 23.5 } } } });
      const result = await request(client, `${SENSOR}/twin/update`, payload, `${SENSOR}/twin/update/result`);
      expectError(result, { eventId: 'number-value', code: 400, reason: UNMARSHAL });
      await expectStillWorking();
    });

    it('"abc" for an int twin, changing nothing', async () => {
      const payload = updatePayload('not-an-int', { temperature: { actual: { value: '30.5' } }, count: { actual: { value: 'abc' } } });
      const result = await request(client, `${SENSOR}/twin/update`, payload, `${SENSOR}/twin/update/result`);
      expectError(result, { eventId: 'not-an-int', code: 400, reason: /the value is not int or integer/ });
      // All or nothing: the valid temperature in the same request was not applied either.
      const twin = (await twinGet(SENSOR, 'after-abc')).twin as Record<string, { actual?: { value: string } }>;
      expect(twin.count!.actual!.value).toBe('8');
      expect(twin.temperature!.actual!.value).toBe('22.75');
      await expectStillWorking();
    });

    it('an unknown device (404) on twin/update and twin/get', async () => {
      const update = await request(client, `${UNKNOWN}/twin/update`, updatePayload('ghost', { temperature: { actual: { value: '1' } } }), `${UNKNOWN}/twin/update/result`);
      expectError(update, { eventId: 'ghost', code: 404, reason: /^update rejected due to the device is not existed$/ });
      const get = await twinGet(UNKNOWN, 'ghost-get');
      expectError(get, { eventId: 'ghost-get', code: 404, reason: /not found/ });
      await expectStillWorking();
    });

    it('a state KubeEdge 1.18+ dropped (disconnected) on state/update', async () => {
      const result = await request(client, `${SENSOR}/state/update`, JSON.stringify({ event_id: 'old-state', state: 'disconnected' }), `${SENSOR}/state/update/result`);
      expectError(result, { eventId: 'old-state', code: 400, reason: /^state "disconnected" is not one of online, offline, ok, unknown, unhealthy$/ });
    });

    it('an invalid state on state/update', async () => {
      const result = await request(client, `${SENSOR}/state/update`, JSON.stringify({ event_id: 'bad-state', state: 'sleeping' }), `${SENSOR}/state/update/result`);
      expectError(result, { eventId: 'bad-state', code: 400, reason: /sleeping/ });
      await expectStillWorking();
    });

    it('malformed JSON on membership/get', async () => {
      const result = await request(client, MEMBERSHIP, '{', `${MEMBERSHIP}/result`);
      expectError(result, { eventId: '', code: 400, reason: /Unmarshal/ });
      await expectStillWorking();
    });
  });
});

describe('KubeEdge device protocol on the embedded broker (mosquitto_pub / mosquitto_sub)', () => {
  let agent: TestAgent;

  beforeAll(async () => {
    agent = await startTestAgent({ maxPayloadBytes: MAX_PAYLOAD });
  });

  afterAll(async () => {
    await agent?.stop();
  });

  it('twin/update: result, document and delta, in that order', async () => {
    const messages = await mosquittoRequest(
      agent.mqttUrl,
      `${SENSOR}/twin/update`,
      updatePayload('mosq-update', { enabled: { actual: { value: 'true' } }, switch: { expected: { value: 'AUTO' } } }),
      `${SENSOR}/twin/update/+`,
      3,
    );
    expect(messages.map((m) => m.topic)).toEqual([`${SENSOR}/twin/update/result`, `${SENSOR}/twin/update/document`, `${SENSOR}/twin/update/delta`]);
    const [result, document, delta] = messages.map((m) => m.body);
    expect(result).toEqual({
      event_id: 'mosq-update',
      timestamp: expect.any(Number),
      twin: {
        enabled: { actual: value('true'), optional: true, metadata: { type: 'boolean' } },
        switch: { expected: value('AUTO'), optional: true, metadata: { type: 'string' } },
      },
    });
    expect(document!.event_id).toBe('mosq-update');
    expect(Object.keys(document!.twin as object).sort()).toEqual(['enabled', 'switch']);
    expect(delta!.event_id).toMatch(UUID);
    expect(delta!.delta).toEqual({ switch: 'AUTO' });
  });

  it('twin/get', async () => {
    const [reply] = await mosquittoRequest(agent.mqttUrl, `${SENSOR}/twin/get`, '{"event_id":"mosq-get"}', `${SENSOR}/twin/get/result`);
    expect(reply!.body.event_id).toBe('mosq-get');
    const twin = reply!.body.twin as Record<string, unknown>;
    expect(Object.keys(twin).sort()).toEqual(['count', 'enabled', 'switch', 'temperature']);
    expect(twin.enabled).toEqual({ actual: value('true'), optional: true, metadata: { type: 'boolean' } });
    expect(allKeys(twin).filter((k) => k.endsWith('_version'))).toEqual([]);
  });

  it('state/update', async () => {
    const [reply] = await mosquittoRequest(agent.mqttUrl, `${SENSOR}/state/update`, '{"event_id":"","timestamp":0,"state":"online"}', `${SENSOR}/state/update/result`);
    expect(reply!.body).toEqual({
      event_id: expect.stringMatching(UUID),
      timestamp: expect.any(Number),
      device: { name: 'sensor-01', state: 'online', lastOnlineTime: expect.stringMatching(LAST_ONLINE_TIME) },
    });
  });

  it('membership/get', async () => {
    const [reply] = await mosquittoRequest(agent.mqttUrl, MEMBERSHIP, '{"event_id":"mosq-members"}', `${MEMBERSHIP}/result`);
    expect(reply!.body.event_id).toBe('mosq-members');
    const ids = (reply!.body.devices as Array<{ id: string }>).map((d) => d.id).sort();
    expect(ids).toEqual(['default/sensor-01', 'plant-a/sensor-02']);
  });

  it('a namespaced device', async () => {
    const [reply] = await mosquittoRequest(
      agent.mqttUrl,
      `${PLANT_SENSOR}/twin/update`,
      updatePayload('mosq-plant', { temperature: { actual: { value: '-3.5' } } }),
      `${PLANT_SENSOR}/twin/update/result`,
    );
    expect(reply!.body).toEqual({
      event_id: 'mosq-plant',
      timestamp: expect.any(Number),
      twin: { temperature: { actual: value('-3.5'), optional: true, metadata: { type: 'float' } } },
    });
  });

  describe('bad input', () => {
    /** One mosquitto_sub sees the error and then the answer to a good request: the agent kept working. */
    async function expectErrorThenWorking(topic: string, payload: string, expected: { eventId: string; code: number; reason: RegExp }): Promise<void> {
      const resultTopic = `${topic}/result`;
      const sub = mosquittoSub(agent.mqttUrl, resultTopic, { count: 2 });
      await sub.ready;
      await mosquittoPub(agent.mqttUrl, topic, payload);
      const good = topic.endsWith('/state/update') ? '{"state":"online"}' : updatePayload('good', { enabled: { actual: { value: 'false' } } });
      await mosquittoPub(agent.mqttUrl, topic, good);
      const [error, ok] = await sub.messages;
      expect(error!.topic).toBe(resultTopic);
      expectError(error!.body, expected);
      expect(ok!.body).not.toHaveProperty('code');
    }

    it('malformed JSON', async () => {
      await expectErrorThenWorking(`${SENSOR}/twin/update`, '{"twin":', { eventId: '', code: 400, reason: /Unmarshal/ });
    });

    it('a payload above the size limit', async () => {
      const payload = updatePayload('big', { switch: { actual: { value: 'y'.repeat(MAX_PAYLOAD) } } });
      await expectErrorThenWorking(`${SENSOR}/twin/update`, payload, { eventId: '', code: 400, reason: /exceeds the limit/ });
    });

    it('a value that is a number', async () => {
      await expectErrorThenWorking(`${SENSOR}/twin/update`, '{"event_id":"num","twin":{"count":{"actual":{"value":5}}}}', { eventId: 'num', code: 400, reason: UNMARSHAL });
    });

    it('"abc" for an int twin', async () => {
      await expectErrorThenWorking(`${SENSOR}/twin/update`, updatePayload('abc', { count: { actual: { value: 'abc' } } }), {
        eventId: 'abc',
        code: 400,
        reason: /the value is not int or integer/,
      });
    });

    it('an invalid state', async () => {
      await expectErrorThenWorking(`${SENSOR}/state/update`, '{"event_id":"zzz","state":"dozing"}', { eventId: 'zzz', code: 400, reason: /dozing/ });
    });

    it('an unknown device', async () => {
      const [reply] = await mosquittoRequest(agent.mqttUrl, `${UNKNOWN}/twin/update`, updatePayload('nobody', { count: { actual: { value: '1' } } }), `${UNKNOWN}/twin/update/result`);
      expectError(reply!.body, { eventId: 'nobody', code: 404, reason: /not existed/ });
      const [ok] = await mosquittoRequest(agent.mqttUrl, `${SENSOR}/twin/get`, '{"event_id":"after-unknown"}', `${SENSOR}/twin/get/result`);
      expect(ok!.body.event_id).toBe('after-unknown');
    });
  });
});
