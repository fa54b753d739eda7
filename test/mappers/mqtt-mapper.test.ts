/**
 * The mqtt mapper against real peers: devices publishing Tasmota-style and zigbee2mqtt-style
 * payloads on the agent's embedded broker and on an external Mosquitto (mqtt.js client,
 * mosquitto_pub / mosquitto_sub), and logging in to a locked-down broker (the agent's own, with
 * TLS client certificates made by openssl), observed through the HTTP API and the twin.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttDeviceConnection, mqttMapper } from '../../mappers/mqtt/mapper.js';
import type { BoundProperty } from '../../src/mapperhost/contract.js';
import { TransportPool } from '../../src/mapperhost/transports.js';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { connectClient } from '../support/mqtt.js';
import { mosquittoPub, mosquittoSub, startMosquitto, type MosquittoBroker } from '../support/mosquitto.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import type { DeviceDetail } from '../../src/twin/routes.js';
import { hashPassword } from '../../src/bus/passwords.js';
import { makeCertificates } from '../support/certificates.js';

const PLUG_MODEL = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plug, namespace: default}
spec:
  protocol: mqtt
  properties:
    - {name: power, type: FLOAT, accessMode: ReadOnly}
    - {name: voltage, type: INT, accessMode: ReadOnly}
    - {name: energy-total, type: FLOAT, accessMode: ReadOnly}
    - {name: relay, type: STRING, accessMode: ReadWrite}
`;

/** A Tasmota plug as in device-profiles/mqtt/tasmota-plug.yaml, with fast cycles. */
function plug(name: string, topic: string, configData = '{}', extra = ''): string {
  const visitor = (config: string) => `\n      visitors: {protocolName: mqtt, configData: ${config}}\n      collectCycle: 100`;
  return `---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ${name}, namespace: default}
spec:
  deviceModelRef: {name: plug}
  protocol: {protocolName: mqtt, configData: ${configData}}
  properties:
    - name: power${visitor(`{stateTopic: tele/${topic}/SENSOR, jsonPath: ENERGY.Power}`)}
    - name: voltage${visitor(`{stateTopic: tele/${topic}/SENSOR, jsonPath: ENERGY.Voltage}`)}
    - name: energy-total${visitor(`{stateTopic: tele/${topic}/SENSOR, jsonPath: ENERGY.Total}`)}
    - name: relay${visitor(extra || `{stateTopic: stat/${topic}/POWER, commandTopic: cmnd/${topic}/POWER}`)}
`;
}

const sensor = (power: number, total = 1.234) =>
  JSON.stringify({ Time: '2026-01-01T00:00:00', ENERGY: { TotalStartTime: '2025-01-01T00:00:00', Total: total, Today: 0.1, Power: power, Voltage: 231, Current: 0.19 } });

function api(agent: TestAgent) {
  return {
    async device(id: string): Promise<DeviceDetail> {
      const response = await agent.api(`/api/v1/devices/${id}`);
      expect(response.status).toBe(200);
      return (await response.json()) as DeviceDetail;
    },
    async reported(id: string, property: string): Promise<string | undefined> {
      return (await this.device(id)).twin[property]?.actual?.value;
    },
    async desire(id: string, values: Record<string, string>): Promise<void> {
      const response = await agent.api(`/api/v1/devices/${id}/twin/desired`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(values) });
      expect(response.status).toBe(200);
    },
  };
}

describe('mqtt mapper on the embedded broker (Tasmota plug)', () => {
  const dir = tempDir('mqtt-mapper-profiles-');
  let agent: TestAgent;
  let client: MqttClient;
  let http: ReturnType<typeof api>;

  beforeAll(async () => {
    writeFileSync(
      join(dir, 'plugs.yaml'),
      PLUG_MODEL +
        plug('plug-a', 'plug_a') +
        plug('silent', 'silent') +
        // A typo in a visitor: the device is unhealthy, the others run.
        plug('typo', 'typo', '{}', '{stateTopik: stat/typo/POWER}') +
        plug('bad-url', 'bad', '{url: "http://example"}') +
        plug('no-broker', 'nb', `{url: "mqtt://127.0.0.1:${await freePort()}"}`),
    );
    agent = await startTestAgent({ profiles: [dir] });
    http = api(agent);
    client = await connectClient(agent.mqttUrl, 'mqtt-mapper-test');
  });

  afterAll(async () => {
    await client?.endAsync();
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports SENSOR telemetry as twin values, numbers by the model type', async () => {
    // Only the devices misconfigured on purpose (typo, bad-url) have visitor errors.
    expect(agent.agent.catalog.current.errors.map((e) => `${e.index} ${e.path}: ${e.reason}`)).toEqual([
      '3 spec.properties.3.visitors.configData.stateTopic: required',
      '3 spec.properties.3.visitors.configData: Unrecognized key: "stateTopik"',
      '4 spec.protocol.configData.url: expected a broker URL (mqtt://host:port)',
    ]);
    // Publishing until it shows: the mapper subscribes asynchronously after the agent is up.
    await waitFor('power 42 reported', async () => {
      await client.publishAsync('tele/plug_a/SENSOR', sensor(42), { qos: 1 });
      return (await http.reported('default/plug-a', 'power')) === '42';
    }, { timeoutMs: 10_000, intervalMs: 200 });
    const device = await waitFor('voltage and energy reported', async () => {
      const d = await http.device('default/plug-a');
      return d.twin.voltage?.actual && d.twin['energy-total']?.actual ? d : undefined;
    });
    expect(device.twin.voltage?.actual?.value).toBe('231');
    expect(device.twin['energy-total']?.actual?.value).toBe('1.234');
    expect(device.state).toBe('online');

    await client.publishAsync('tele/plug_a/SENSOR', sensor(57.5, 1.3), { qos: 1 });
    await waitFor('power 57.5 reported', async () => (await http.reported('default/plug-a', 'power')) === '57.5');
  });

  it('writes a desired relay state on cmnd/…/POWER (seen by mosquitto_sub) and reports the stat reply', async () => {
    const sub = mosquittoSub(agent.mqttUrl, 'cmnd/plug_a/POWER', { timeoutS: 10 });
    await sub.ready;
    await http.desire('default/plug-a', { relay: 'ON' });
    const [command] = await sub.messages;
    expect(command).toEqual({ topic: 'cmnd/plug_a/POWER', body: { raw: 'ON' } });

    // The plug switches and answers on stat/…/POWER; the twin follows and the delta closes.
    await mosquittoPub(agent.mqttUrl, 'stat/plug_a/POWER', 'ON');
    const device = await waitFor('relay ON reported with no delta', async () => {
      const d = await http.device('default/plug-a');
      return d.twin.relay?.actual?.value === 'ON' && !('relay' in d.delta) ? d : undefined;
    });
    expect(device.delta).toEqual({});
  });

  it('ignores malformed payloads: the good value stays, the agent keeps working', async () => {
    for (const bad of ['not json', '{"ENERGY":{}}', '{"ENERGY":{"Power":{"now":1}}}']) await client.publishAsync('tele/plug_a/SENSOR', bad, { qos: 1 });
    // Published after the bad ones on the same connection, so it arrives after them.
    await client.publishAsync('stat/plug_a/POWER', 'OFF', { qos: 1 });
    await waitFor('relay OFF reported', async () => (await http.reported('default/plug-a', 'relay')) === 'OFF');
    expect(await http.reported('default/plug-a', 'power')).toBe('57.5');
    expect(new Set(agent.agent.twins.history('default/plug-a', 'power').map((h) => h.value))).toEqual(new Set(['42', '57.5']));
    expect((await http.device('default/plug-a')).state).toBe('online');
  });

  it('marks a device that never publishes offline, one with a bad config or no broker unhealthy', async () => {
    await waitFor('silent offline', async () => (await http.device('default/silent')).state === 'offline');
    await waitFor('typo unhealthy', async () => (await http.device('default/typo')).state === 'unhealthy');
    await waitFor('bad-url unhealthy', async () => (await http.device('default/bad-url')).state === 'unhealthy');
    await waitFor('no-broker unhealthy', async () => (await http.device('default/no-broker')).state === 'unhealthy', { timeoutMs: 10_000 });
  });

  it('counts and logs malformed payloads per device, validates configs and refuses writes without commandTopic', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const catalog = agent.agent.catalog.current;
    const device = catalog.devices.get('default/plug-a')!;
    const model = catalog.models.get(device.modelId)!;
    const context = { log, busUrl: agent.mqttUrl, transports: new TransportPool(), push: () => undefined, lost: () => undefined };
    const bound = (name: string): BoundProperty => ({ name, visitor: device.properties.find((p) => p.name === name)!.visitor, model: model.properties.find((p) => p.name === name)! });

    const connection = (await mqttMapper.connect(device, model, context)) as MqttDeviceConnection;
    try {
      await expect(connection.read(bound('power'))).rejects.toThrow('no value received yet on tele/plug_a/SENSOR');
      await client.publishAsync('tele/plug_a/SENSOR', sensor(12), { qos: 1 });
      await waitFor('the first value', () => connection.read(bound('power')).then((v) => v === 12));
      for (const bad of ['{"ENERGY":', '[1,2]', '{"ENERGY":{"Power":null}}']) await client.publishAsync('tele/plug_a/SENSOR', bad, { qos: 1 });
      await waitFor('three malformed payloads counted', () => connection.malformed === 3);
      expect(await connection.read(bound('power'))).toBe(12);
      const warnings = lines.filter((l) => l.msg === 'malformed mqtt payload ignored');
      expect(warnings.map((w) => w.malformed)).toEqual([1, 2, 3]);
      expect(warnings[0]).toMatchObject({ topic: 'tele/plug_a/SENSOR', err: 'payload is not JSON' });
      expect(String(warnings[2]!.err)).toContain('power: ENERGY.Power is null, not a value');
    } finally {
      await connection.close();
    }

    // What validate finds when the manifests load is what connect refuses with, word for word.
    const withVisitor = (name: string, visitor: Record<string, unknown>) => ({ ...device, properties: device.properties.map((p) => (p.name === name ? { ...p, visitor } : p)) });
    const refused = async (bad: typeof device, errors: string[]) => {
      expect(mqttMapper.validate(bad, model)).toEqual(errors);
      await expect(mqttMapper.connect(bad, model, context)).rejects.toThrow(errors.join('; '));
    };
    expect(mqttMapper.validate(device, model)).toEqual([]);
    await refused(withVisitor('power', { jsonPath: 'ENERGY.Power' }), ['spec.properties.0.visitors.configData.stateTopic: required']);
    await refused(withVisitor('relay', { stateTopic: 'stat/#', qos: 3 }), [
      'spec.properties.3.visitors.configData.stateTopic: must not contain the wildcards + or #',
      'spec.properties.3.visitors.configData.qos: expected 0, 1 or 2',
    ]);
    await refused({ ...device, protocol: { name: 'mqtt', config: { url: 'localhost' } } }, ['spec.protocol.configData.url: expected a broker URL (mqtt://host:port)']);

    const readOnly = (await mqttMapper.connect(withVisitor('relay', { stateTopic: 'stat/plug_a/POWER' }), model, context)) as MqttDeviceConnection;
    try {
      await expect(readOnly.write(bound('relay'), 'ON')).rejects.toThrow('property relay is not writable: its visitor has no commandTopic');
    } finally {
      await readOnly.close();
    }
  });
});

describe('mqtt mapper on an external Mosquitto (zigbee2mqtt-style JSON)', () => {
  const dir = tempDir('mqtt-mapper-profiles-');
  let broker: MosquittoBroker;
  let agent: TestAgent;
  let http: ReturnType<typeof api>;

  beforeAll(async () => {
    broker = await startMosquitto();
    const lamp = (name: string) => `---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ${name}, namespace: default}
spec:
  deviceModelRef: {name: lamp}
  protocol: {protocolName: mqtt, configData: {url: "${broker.url}", username: edge, clientId: edge-mqtt-mapper}}
  properties:
    - name: state
      visitors:
        protocolName: mqtt
        configData: {stateTopic: zigbee2mqtt/${name}, jsonPath: state, commandTopic: zigbee2mqtt/${name}/set, commandTemplate: '{"state":"{{value}}"}', qos: 1}
      collectCycle: 100
    - name: brightness
      visitors: {protocolName: mqtt, configData: {stateTopic: zigbee2mqtt/${name}, jsonPath: brightness}}
      collectCycle: 100
    - name: lqi
      visitors: {protocolName: mqtt, configData: {stateTopic: zigbee2mqtt/${name}, jsonPath: links.0.lqi}}
      collectCycle: 100
`;
    writeFileSync(
      join(dir, 'lamps.yaml'),
      `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: lamp, namespace: default}
spec:
  protocol: mqtt
  properties:
    - {name: state, type: STRING, accessMode: ReadWrite}
    - {name: brightness, type: INT, accessMode: ReadOnly}
    - {name: lqi, type: INT, accessMode: ReadOnly}
` + lamp('lamp-1') + lamp('lamp-2'),
    );
    agent = await startTestAgent({ profiles: [dir] });
    http = api(agent);
  });

  afterAll(async () => {
    await agent?.stop();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads JSON values (array paths too) published on Mosquitto, with one shared client for both devices', async () => {
    expect(agent.agent.catalog.current.errors).toEqual([]);
    for (const name of ['lamp-1', 'lamp-2']) {
      await waitFor(`${name} brightness reported`, async () => {
        await mosquittoPub(broker.url, `zigbee2mqtt/${name}`, JSON.stringify({ state: 'OFF', brightness: name === 'lamp-1' ? 120 : 30, links: [{ lqi: 87 }] }));
        return (await http.reported(`default/${name}`, 'brightness')) !== undefined;
      }, { timeoutMs: 10_000, intervalMs: 200 });
    }
    const lamp1 = await waitFor('lamp-1 state and lqi', async () => {
      const d = await http.device('default/lamp-1');
      return d.twin.state?.actual && d.twin.lqi?.actual ? d : undefined;
    });
    expect(lamp1.twin.brightness?.actual?.value).toBe('120');
    expect(lamp1.twin.state?.actual?.value).toBe('OFF');
    expect(lamp1.twin.lqi?.actual?.value).toBe('87');
    expect(await http.reported('default/lamp-2', 'brightness')).toBe('30');
    // The devices talk to Mosquitto, not to the agent's bus, over one connection.
    expect(broker.log().match(/New client connected from .* as edge-mqtt-mapper /g)).toHaveLength(1);
  });

  it('publishes the rendered commandTemplate on the commandTopic and follows the device state', async () => {
    const sub = mosquittoSub(broker.url, 'zigbee2mqtt/lamp-2/set', { timeoutS: 10 });
    await sub.ready;
    await http.desire('default/lamp-2', { state: 'ON' });
    expect(await sub.messages).toEqual([{ topic: 'zigbee2mqtt/lamp-2/set', body: { state: 'ON' } }]);
    await mosquittoPub(broker.url, 'zigbee2mqtt/lamp-2', JSON.stringify({ state: 'ON', brightness: 30, links: [{ lqi: 80 }] }));
    await waitFor('lamp-2 ON with no delta', async () => {
      const d = await http.device('default/lamp-2');
      return d.twin.state?.actual?.value === 'ON' && d.twin.lqi?.actual?.value === '80' && !('state' in d.delta);
    });
  });

  it('marks the devices offline when their broker goes away; the agent keeps serving', async () => {
    await broker.stop();
    await waitFor('lamp-1 and lamp-2 offline', async () => (await http.device('default/lamp-1')).state === 'offline' && (await http.device('default/lamp-2')).state === 'offline');
    expect((await fetch(`${agent.apiUrl}/healthz`)).status).toBe(200);
  });
});

describe('mqtt mapper logging in to a locked-down broker (TLS client certificate, passwordFile)', () => {
  const dir = tempDir('mqtt-mapper-login-');
  const PASSWORD = 'plug password';
  let agent: TestAgent;
  let http: ReturnType<typeof api>;
  let tester: MqttClient;
  let port: number;

  beforeAll(async () => {
    const certificates = makeCertificates(dir);
    const hash = await hashPassword(PASSWORD);
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const passwordFile = file('plug-pw.password', `${PASSWORD}\n`);
    const wrongFile = file('wrong.password', 'not the password\n');
    const client = certificates.client('plug-tls');
    port = await freePort();
    const tlsPort = await freePort();
    const plugRights = (topic: string) => ({ subscribe: [`tele/${topic}/#`, `stat/${topic}/#`], publish: [`cmnd/${topic}/#`] });
    writeFileSync(
      join(dir, 'plugs.yaml'),
      PLUG_MODEL +
        plug('plug-tls', 'plug_tls', `{url: "mqtts://127.0.0.1:${tlsPort}", ca: "${certificates.ca}", cert: "${client.cert}", key: "${client.key}"}`) +
        plug('plug-pw', 'plug_pw', `{url: "mqtt://127.0.0.1:${port}", username: plug-pw, passwordFile: "${passwordFile}"}`) +
        plug('plug-wrong', 'plug_wrong', `{url: "mqtt://127.0.0.1:${port}", username: plug-pw, passwordFile: "${wrongFile}"}`) +
        // No url: the agent's own bus, which its mapper logs in to by itself.
        plug('plug-own', 'plug_own'),
    );
    agent = await startTestAgent({
      profiles: [dir],
      config: {
        mqtt: {
          port,
          allowAnonymous: 'never',
          users: [
            { username: 'plug-tls', ...plugRights('plug_tls') },
            { username: 'plug-pw', passwordHash: hash, ...plugRights('plug_pw') },
            { username: 'tester', passwordHash: hash, publish: ['#'], subscribe: ['#'] },
          ],
          tls: { port: tlsPort, cert: certificates.server.cert, key: certificates.server.key, ca: certificates.ca },
        },
      },
    });
    http = api(agent);
    tester = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'tester', username: 'tester', password: PASSWORD, reconnectPeriod: 0 });
  });

  afterAll(async () => {
    await tester?.endAsync();
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads its devices through a TLS broker with a client certificate, a passwordFile login, and the agent’s own bus', async () => {
    for (const [id, topic] of [['plug-tls', 'plug_tls'], ['plug-pw', 'plug_pw'], ['plug-own', 'plug_own']]) {
      await waitFor(`${id} power reported`, async () => {
        await tester.publishAsync(`tele/${topic}/SENSOR`, sensor(11), { qos: 1 });
        return (await http.reported(`default/${id}`, 'power')) === '11';
      }, { timeoutMs: 10_000, intervalMs: 200 });
    }
    const command = new Promise<string>((resolve) => tester.on('message', (topic, payload) => topic === 'cmnd/plug_tls/POWER' && resolve(payload.toString())));
    await tester.subscribeAsync('cmnd/plug_tls/POWER');
    await http.desire('default/plug-tls', { relay: 'ON' });
    expect(await command).toBe('ON');
  });

  it('marks a device with a wrong password unhealthy, saying why without the password', async () => {
    const device = await waitFor('plug-wrong unhealthy', async () => {
      const d = await http.device('default/plug-wrong');
      return d.state === 'unhealthy' ? d : undefined;
    }, { timeoutMs: 10_000 });
    expect(device.reason).toMatch(/Bad username or password/);
    expect(JSON.stringify(device)).not.toContain('not the password');
  });

  it('validates the login and TLS options, and never logs the password', async () => {
    const catalog = agent.agent.catalog.current;
    const device = catalog.devices.get('default/plug-pw')!;
    const model = catalog.models.get(device.modelId)!;
    const withConfig = (config: Record<string, unknown>) => ({ ...device, protocol: { name: 'mqtt', config } });
    expect(mqttMapper.validate(withConfig({ url: 'mqtt://h:1883', password: 'p', passwordFile: '/p' }), model)).toEqual(['spec.protocol.configData.passwordFile: password and passwordFile exclude each other']);
    expect(mqttMapper.validate(withConfig({ url: 'mqtts://h:8883', cert: '/c' }), model)).toEqual(['spec.protocol.configData.cert: cert and key go together']);
    expect(mqttMapper.validate(withConfig({ url: 'mqtt://h:1883', ca: '/ca' }), model)).toEqual(['spec.protocol.configData.url: ca, cert and key need a TLS broker url (mqtts://host:8883)']);
    expect(mqttMapper.validate(withConfig({ ca: '/ca' }), model)).toEqual(['spec.protocol.configData.url: ca, cert and key need a TLS broker url (mqtts://host:8883)']);

    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const context = { log, busUrl: agent.mqttUrl, transports: new TransportPool(), push: () => undefined, lost: () => undefined };
    const secret = 's3cret-in-the-manifest';
    await expect(mqttMapper.connect(withConfig({ url: `mqtt://plug-pw:${secret}@127.0.0.1:${port}` }), model, context)).rejects.toThrow(/cannot connect to mqtt broker mqtt:\/\/plug-pw:\*\*\*@127\.0\.0\.1:\d+: Connection refused: Bad username or password/);
    await expect(mqttMapper.connect(withConfig({ url: `mqtt://127.0.0.1:${port}`, username: 'plug-pw', password: secret }), model, context)).rejects.toThrow(/Bad username or password/);
    await expect(mqttMapper.connect(withConfig({ url: `mqtt://127.0.0.1:${port}`, username: 'plug-pw', passwordFile: join(dir, 'missing') }), model, context)).rejects.toThrow(/cannot read the mqtt passwordFile file .*missing: ENOENT/);
    const connection = await mqttMapper.connect(withConfig({ url: `mqtt://127.0.0.1:${port}`, username: 'plug-pw', password: PASSWORD }), model, context);
    await connection.close();
    await context.transports.closeAll();
    expect(lines.join('\n')).not.toContain(secret);
    expect(lines.join('\n')).not.toContain(PASSWORD);
  });
});
