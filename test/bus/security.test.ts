/**
 * Who may do what on the embedded broker, tried as a local process, a LAN host or a device
 * would: the `mqtt` npm client, Mosquitto's mosquitto_pub/mosquitto_sub as separate processes,
 * a raw TCP socket for what no well-behaved client sends, and TLS clients with certificates made
 * by openssl. Each refusal is asserted as the client sees it: a CONNACK return code, a SUBACK
 * failure (0x80), or its connection closed (a refused PUBLISH: MQTT 3.1.1 has no negative PUBACK).
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mqttSection } from '../../src/bus/config.js';
import { EmbeddedBus } from '../../src/bus/embedded.js';
import { hashPassword, parsePasswordHash, verifyPassword } from '../../src/bus/passwords.js';
import { RefusalLog } from '../../src/bus/refusals.js';
import { resolveConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { parseOrThrow } from '../../src/schema.js';
import { CLI, spawnAgent, startTestAgent, tempDir, TEST_PROFILES, type TestAgent } from '../support/agent.js';
import { MOSQUITTO_PUB, MOSQUITTO_SUB, mosquittoRequest, startMosquitto } from '../support/mosquitto.js';
import { request } from '../support/mqtt.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';
import { makeCertificates, type TestCertificates } from '../support/certificates.js';
import { publishHeader, rawConnect } from './raw-mqtt.js';

const SENSOR = '$hw/events/device/default/sensor-01';
const PLANT = '$hw/events/device/plant-a/sensor-02';
const PASSWORD = 'correct horse battery';
/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3). */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

/** The topics the agent answers on, spelled out: no client may publish on them. */
const ANSWER_TOPICS = [
  `${SENSOR}/twin/update/result`,
  `${SENSOR}/twin/update/delta`,
  `${SENSOR}/twin/update/document`,
  `${SENSOR}/twin/get/result`,
  `${SENSOR}/state/update/result`,
  '$hw/events/node/test-node/membership/get/result',
  '$hw/events/node/test-node/membership/updated',
];

const update = (eventId: string, twin: Record<string, unknown>) => JSON.stringify({ event_id: eventId, timestamp: Date.now(), twin });

/** A non-loopback IPv4 address of this host, to connect from "the LAN". */
const LAN_ADDRESS = Object.values(networkInterfaces())
  .flat()
  .find((i) => i?.family === 'IPv4' && !i.internal)?.address;

/** A global IPv6 address of this host, if it has one. */
const LAN_ADDRESS_V6 = Object.values(networkInterfaces())
  .flat()
  .find((i) => i?.family === 'IPv6' && !i.internal && !i.address.startsWith('fe80'))?.address;

function portOf(url: string): number {
  return Number(new URL(url).port);
}

const clients: MqttClient[] = [];

async function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
  clients.push(client);
  return client;
}

/** The CONNACK return code a connection gets: 0 when accepted. */
async function connack(url: string, options: IClientOptions = {}): Promise<number> {
  try {
    await (await connect(url, options)).endAsync();
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

/** Publishes at QoS 1 and tells what came back: the PUBACK, or the connection closed by the broker. */
function publishOutcome(client: MqttClient, topic: string, payload: string | Buffer, retain = false): Promise<'puback' | 'closed'> {
  return new Promise((resolve) => {
    const onClose = () => resolve('closed');
    client.once('close', onClose);
    client.publish(topic, payload, { qos: 1, retain }, (error) => {
      if (error) return;
      client.off('close', onClose);
      resolve('puback');
    });
  });
}

/** Subscribes and resolves with the SUBACK's return codes, 0x80 for each refused filter. */
function suback(client: MqttClient, filters: string[]): Promise<number[]> {
  return new Promise((resolve) => {
    const onPacket = (packet: Packet) => {
      if (packet.cmd !== 'suback') return;
      client.off('packetreceive', onPacket);
      resolve(packet.granted as number[]);
    };
    client.on('packetreceive', onPacket);
    client.subscribe(filters, { qos: 0 }, () => undefined);
  });
}

/** Every message `client` receives from now on. */
function received(client: MqttClient): Array<{ topic: string; payload: string }> {
  const messages: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  return messages;
}

/** A Mosquitto command-line client run to its end: exit code and what it printed. */
function runMosquitto(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

/** mosquitto_sub (-d: it says when the SUBACK came), for a publish that must come after it. */
function mosquittoSubscribe(args: string[]): { subscribed: Promise<void>; message: Promise<string> } {
  const child = spawn('/usr/bin/stdbuf', ['-oL', MOSQUITTO_SUB, '-d', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  const subscribed = new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('Subscribed (mid')) resolve();
    }),
  );
  const message = new Promise<string>((resolve) => child.once('exit', () => resolve(stdout.split('\n').filter((line) => line.startsWith('{')).join('\n'))));
  return { subscribed, message };
}

const hostPort = (url: string) => ['-h', new URL(url).hostname, '-p', new URL(url).port];

let hash: string;
const dir = tempDir('mqtt-security-');
let certificates: TestCertificates;

/** The users both agents know: a mapper bound to one device, one bound to a namespace (hash in a file), a Tasmota plug, and one given `$hw/#`. */
function users(): Array<Record<string, unknown>> {
  const hashFile = join(dir, 'plant-mapper.hash');
  writeFileSync(hashFile, `${hash}\n`);
  return [
    { username: 'sensor-mapper', passwordHash: hash, devices: ['default/sensor-01'] },
    { username: 'plant-mapper', passwordFile: hashFile, devices: ['plant-a/*'] },
    { username: 'plug-1', passwordHash: hash, publish: ['tele/plug-1/#', 'stat/plug-1/#'], subscribe: ['cmnd/plug-1/#'] },
    { username: 'wide', passwordHash: hash, publish: ['$hw/#'], subscribe: ['$hw/#'] },
  ];
}

beforeAll(async () => {
  hash = await hashPassword(PASSWORD);
  certificates = makeCertificates(dir);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  rmSync(dir, { recursive: true, force: true });
});

describe('default config: anonymous on loopback, users from anywhere (bound to 0.0.0.0)', () => {
  let agent: TestAgent;
  let url: string;
  let tlsPort: number;

  beforeAll(async () => {
    tlsPort = await freePort();
    agent = await startTestAgent({
      config: {
        mqtt: {
          host: '0.0.0.0',
          users: users(),
          maxKeepaliveSeconds: 120,
          maxPacketBytes: 96 * 1024,
          maxRetainedMessages: 3,
          maxRetainedBytes: 2048,
          maxSubscriptionsPerClient: 5,
          maxPersistentSessions: 2,
          maxQueuedMessages: 3,
          maxQueuedBytes: 4096,
          tls: { port: tlsPort, cert: certificates.server.cert, key: certificates.server.key, ca: certificates.ca },
        },
      },
    });
    url = `mqtt://127.0.0.1:${portOf(agent.mqttUrl)}`;
  });

  afterAll(async () => {
    await agent?.stop();
  });

  const login = (username: string, options: IClientOptions = {}) => connect(url, { username, password: PASSWORD, ...options });

  it('a KubeEdge-style mapper connecting anonymously on 127.0.0.1 works as before (mosquitto_pub/_sub, mqtt.js)', async () => {
    const [result] = await mosquittoRequest(url, `${SENSOR}/twin/update`, update('anon-1', { count: { actual: { value: '1' } } }), `${SENSOR}/twin/update/result`);
    expect(result!.body).toMatchObject({ event_id: 'anon-1', twin: { count: { actual: { value: '1' } } } });

    const mapper = await connect(url, { clientId: 'kubeedge-mapper-sensor' });
    const messages = received(mapper);
    await mapper.subscribeAsync(`${SENSOR}/twin/update/delta`);
    await mapper.publishAsync(`${SENSOR}/twin/update`, update('anon-2', { switch: { expected: { value: 'ON' } } }), { qos: 1 });
    await waitFor('the delta', () => messages.some((m) => m.topic.endsWith('/delta')));
    await mapper.endAsync();
  });

  it.runIf(LAN_ADDRESS)('refuses an anonymous client from a LAN address: CONNACK 5 (not authorized)', async () => {
    const lan = `mqtt://${LAN_ADDRESS}:${portOf(url)}`;
    expect(await connack(lan)).toBe(NOT_AUTHORIZED);
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(lan), '-t', 'tele/x', '-m', 'x']);
    expect(pub.stderr).toMatch(/Connection Refused: not authorised/);
    // A user logs in from there.
    expect(await connack(lan, { username: 'plug-1', password: PASSWORD })).toBe(0);
  });

  it('refuses a wrong password and an unknown user alike: CONNACK 4', async () => {
    expect(await connack(url, { username: 'sensor-mapper', password: 'wrong' })).toBe(BAD_USERNAME_OR_PASSWORD);
    expect(await connack(url, { username: 'nobody', password: PASSWORD })).toBe(BAD_USERNAME_OR_PASSWORD);
    expect(await connack(url, { username: '$edge-agent', password: PASSWORD })).toBe(BAD_USERNAME_OR_PASSWORD);
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-u', 'sensor-mapper', '-P', 'wrong', '-t', 'x', '-m', 'x']);
    expect(pub.stderr).toMatch(/Connection Refused: bad user name or password/);
    expect(await connack(url, { username: 'sensor-mapper', password: PASSWORD })).toBe(0);
  });

  it('lets no client publish on the topics the agent answers on: the connection is closed and no subscriber gets it', async () => {
    const watcher = await connect(url);
    const seen = received(watcher);
    await watcher.subscribeAsync('$hw/#');
    for (const topic of ANSWER_TOPICS) {
      const anonymous = await connect(url);
      expect(await publishOutcome(anonymous, topic, '{"event_id":"forged"}'), topic).toBe('closed');
      // Given `publish: ['$hw/#']`, a user may not either.
      const wide = await login('wide');
      expect(await publishOutcome(wide, topic, '{"event_id":"forged"}'), topic).toBe('closed');
    }
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-q', '1', '-t', `${SENSOR}/twin/update/delta`, '-m', '{"event_id":"forged"}']);
    expect(pub.stderr).toMatch(/connection was lost/);
    // An answer the agent itself sends arrives after anything published before it.
    await request(watcher, `${SENSOR}/twin/get`, '{"event_id":"barrier"}', `${SENSOR}/twin/get/result`);
    expect(seen.filter((m) => m.payload.includes('forged'))).toEqual([]);
  });

  it('refuses retained messages under $hw/ and keeps none', async () => {
    const anonymous = await connect(url);
    expect(await publishOutcome(anonymous, `${SENSOR}/twin/update`, update('retained', { count: { actual: { value: '3' } } }), true)).toBe('closed');
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-r', '-q', '1', '-t', `${SENSOR}/state/update`, '-m', '{"state":"online"}']);
    expect(pub.stderr).toMatch(/connection was lost/);
    const late = await connect(url);
    const seen = received(late);
    await late.subscribeAsync('$hw/#');
    await sleep(300);
    expect(seen).toEqual([]);
  });

  it('refuses publishing on $SYS/ topics', async () => {
    expect(await publishOutcome(await connect(url), '$SYS/broker/forged', 'x')).toBe('closed');
  });

  it('refuses taking over a connected client id from another identity or address: CONNACK 2, the first stays', async () => {
    const mapper = await connect(url, { clientId: 'mapper-a' });
    expect(await connack(url, { clientId: 'mapper-a', username: 'plug-1', password: PASSWORD })).toBe(IDENTIFIER_REJECTED);
    const sub = await runMosquitto(MOSQUITTO_SUB, [...hostPort(url), '-i', 'mapper-a', '-u', 'plug-1', '-P', PASSWORD, '-t', 'cmnd/plug-1/x', '-C', '1', '-W', '2']);
    expect(sub.stderr).toMatch(/Connection Refused: identifier rejected/);
    expect(await publishOutcome(mapper, `${SENSOR}/twin/get`, '{}')).toBe('puback');

    const user = await login('sensor-mapper', { clientId: 'mapper-b' });
    if (LAN_ADDRESS) {
      // The same user from another address may not either.
      expect(await connack(`mqtt://${LAN_ADDRESS}:${portOf(url)}`, { clientId: 'mapper-b', username: 'sensor-mapper', password: PASSWORD })).toBe(IDENTIFIER_REJECTED);
    }
    // The same identity from the same address may: a mapper reconnecting before the broker noticed its old connection died.
    const userClosed = new Promise<void>((resolve) => user.once('close', () => resolve()));
    expect(await connack(url, { clientId: 'mapper-b', username: 'sensor-mapper', password: PASSWORD })).toBe(0);
    await userClosed;
  });

  it('refuses a keepalive of 0 or above mqtt.maxKeepaliveSeconds: CONNACK 2', async () => {
    expect(await connack(url, { keepalive: 0 })).toBe(IDENTIFIER_REJECTED);
    expect(await connack(url, { keepalive: 121 })).toBe(IDENTIFIER_REJECTED);
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-k', '3600', '-t', 'x', '-m', 'x']);
    expect(pub.stderr).toMatch(/Connection Refused: identifier rejected/);
    expect(await connack(url, { keepalive: 120 })).toBe(0);
  });

  it('cuts a packet over mqtt.maxPacketBytes from its header, before its body arrives', async () => {
    expect(await publishOutcome(await connect(url), 'tele/big', Buffer.alloc(100 * 1024, 'x'))).toBe('closed');

    // A PUBLISH announcing 64 MiB, its body trickling in.
    const { socket, returnCode, closed } = await rawConnect(portOf(url), 'raw');
    expect(returnCode).toBe(0);
    socket.write(publishHeader('tele/big', 64 * 1024 * 1024));
    let sent = 0;
    const body = Buffer.alloc(1024);
    const feeding = setInterval(() => {
      if (!socket.destroyed) sent += socket.write(body) ? body.length : 0;
    }, 10);
    await closed;
    clearInterval(feeding);
    expect(sent).toBeLessThan(256 * 1024);
    expect(await publishOutcome(await connect(url), `${SENSOR}/twin/get`, '{}')).toBe('puback');
  });

  it('keeps retained messages within mqtt.maxRetainedMessages and mqtt.maxRetainedBytes', async () => {
    const device = await connect(url);
    for (const n of [1, 2, 3]) expect(await publishOutcome(device, `stat/plug-9/R${n}`, `v${n}`, true)).toBe('puback');
    expect(await publishOutcome(device, 'stat/plug-9/R4', 'v4', true)).toBe('closed');
    // Replacing one keeps the count; an empty payload deletes one and makes room.
    const again = await connect(url);
    expect(await publishOutcome(again, 'stat/plug-9/R3', 'v3b', true)).toBe('puback');
    expect(await publishOutcome(again, 'stat/plug-9/R1', '', true)).toBe('puback');
    expect(await publishOutcome(again, 'stat/plug-9/R4', 'v4', true)).toBe('puback');
    expect(await publishOutcome(again, 'stat/plug-9/R2', Buffer.alloc(2100, 'x'), true)).toBe('closed');

    const late = await connect(url);
    const seen = received(late);
    await late.subscribeAsync('stat/plug-9/#');
    await waitFor('the retained messages', () => seen.length === 3);
    expect(seen.map((m) => `${m.topic}=${m.payload}`).sort()).toEqual(['stat/plug-9/R2=v2', 'stat/plug-9/R3=v3b', 'stat/plug-9/R4=v4']);
  });

  it('refuses subscriptions beyond mqtt.maxSubscriptionsPerClient: 0x80 in the SUBACK, the connection stays', async () => {
    const client = await connect(url);
    expect(await suback(client, ['a/1', 'a/2', 'a/3', 'a/4'])).toEqual([0, 0, 0, 0]);
    // A filter already held does not count again.
    expect(await suback(client, ['a/1', 'a/5', 'a/6'])).toEqual([0, 0, SUBACK_FAILURE]);
    await client.unsubscribeAsync('a/2');
    expect(await suback(client, ['a/6'])).toEqual([0]);
    expect(client.connected).toBe(true);

    const sub = await runMosquitto('/usr/bin/stdbuf', ['-oL', MOSQUITTO_SUB, ...hostPort(url), '-d', '-W', '1', ...['b/1', 'b/2', 'b/3', 'b/4', 'b/5', 'b/6'].flatMap((t) => ['-t', t])]);
    expect(sub.stdout).toMatch(/Subscribed \(mid: \d+\): 0, 0, 0, 0, 0, 128/);
  });

  it('keeps at most mqtt.maxPersistentSessions sessions: a new one beyond gets CONNACK 3; a kept id comes back; a clean login ends one', async () => {
    const kept = { clean: false } as const;
    expect(await connack(url, { ...kept, clientId: 'kept-1' })).toBe(0);
    expect(await connack(url, { ...kept, clientId: 'kept-2' })).toBe(0);
    expect(await connack(url, { ...kept, clientId: 'kept-3' })).toBe(SERVER_UNAVAILABLE);
    expect(await connack(url, { ...kept, clientId: 'kept-1' })).toBe(0);
    expect(await connack(url, { clientId: 'kept-1' })).toBe(0);
    expect(await connack(url, { ...kept, clientId: 'kept-3' })).toBe(0);
    // Ends them both: the next test's session needs a place.
    for (const clientId of ['kept-2', 'kept-3']) expect(await connack(url, { clientId })).toBe(0);
  });

  it('keeps at most mqtt.maxQueuedMessages messages for a session whose client is away, and mqtt.maxQueuedBytes for all: the rest are dropped', async () => {
    /** Comes back to its kept session and collects what the broker kept for it. */
    const comeBack = async (): Promise<string[]> => {
      const client = mqtt.connect(url, { clientId: 'away', clean: false, reconnectPeriod: 0 });
      clients.push(client);
      const topics: string[] = [];
      client.on('message', (topic) => topics.push(topic));
      await new Promise((resolve) => client.once('connect', resolve));
      await sleep(500);
      await client.endAsync();
      return topics;
    };
    const away = await connect(url, { clientId: 'away', clean: false });
    await away.subscribeAsync('tele/away/#', { qos: 1 });
    await away.endAsync();
    const device = await connect(url);
    for (const n of [1, 2, 3, 4, 5]) await device.publishAsync(`tele/away/${n}`, `m${n}`, { qos: 1 });
    expect(await comeBack()).toEqual(['tele/away/1', 'tele/away/2', 'tele/away/3']);

    await device.publishAsync('tele/away/big', Buffer.alloc(3000, 'x'), { qos: 1 });
    await device.publishAsync('tele/away/bigger', Buffer.alloc(2000, 'x'), { qos: 1 });
    await device.publishAsync('tele/away/small', 'x', { qos: 1 });
    expect(await comeBack()).toEqual(['tele/away/big', 'tele/away/small']);
    expect(await connack(url, { clientId: 'away' })).toBe(0);
  });

  describe('a user bound to a device', () => {
    it('updates its own device and is refused on another: the publish closes the connection, the subscription gets 0x80', async () => {
      const mapper = await login('sensor-mapper');
      const result = await request(mapper, `${SENSOR}/twin/update`, update('own', { count: { actual: { value: '5' } } }), `${SENSOR}/twin/update/result`);
      expect(result).toMatchObject({ event_id: 'own', twin: { count: { actual: { value: '5' } } } });
      expect(await suback(mapper, [`${PLANT}/twin/update/delta`])).toEqual([SUBACK_FAILURE]);
      expect(await suback(mapper, ['tele/#'])).toEqual([SUBACK_FAILURE]);
      expect(await publishOutcome(mapper, `${PLANT}/twin/update`, update('other', { temperature: { actual: { value: '1' } } }))).toBe('closed');

      const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-u', 'sensor-mapper', '-P', PASSWORD, '-q', '1', '-t', `${PLANT}/state/update`, '-m', '{"state":"online"}']);
      expect(pub.stderr).toMatch(/connection was lost/);
      const sub = await runMosquitto(MOSQUITTO_SUB, [...hostPort(url), '-u', 'sensor-mapper', '-P', PASSWORD, '-t', `${PLANT}/twin/update/delta`, '-W', '2']);
      expect(sub.stderr).toMatch(/All subscription requests were denied/);
    });

    it('subscribing with wildcards, receives only its own devices’ answers', async () => {
      const mapper = await login('sensor-mapper');
      const seen = received(mapper);
      expect(await suback(mapper, ['$hw/events/device/+/+/twin/update/delta', '$hw/#'])).toEqual([0, 0]);
      const anonymous = await connect(url);
      await anonymous.publishAsync(`${PLANT}/twin/update`, update('plant-desire', { temperature: { expected: { value: '7' } } }), { qos: 1 });
      await anonymous.publishAsync(`${SENSOR}/twin/update`, update('sensor-desire', { switch: { expected: { value: 'AUTO' } } }), { qos: 1 });
      await waitFor('its own delta', () => seen.some((m) => m.topic === `${SENSOR}/twin/update/delta`));
      await sleep(200);
      expect(seen.filter((m) => !m.topic.startsWith(`${SENSOR}/`))).toEqual([]);
      expect(seen.some((m) => m.topic === `${SENSOR}/twin/update`)).toBe(false);
    });

    it('bound to a namespace (ns/*, its hash in a passwordFile), serves every device there and only there', async () => {
      const mapper = await login('plant-mapper');
      const result = await request(mapper, `${PLANT}/twin/update`, update('plant', { temperature: { actual: { value: '18.5' } } }), `${PLANT}/twin/update/result`);
      expect(result).toMatchObject({ event_id: 'plant' });
      expect(await publishOutcome(mapper, `${SENSOR}/twin/get`, '{}')).toBe('closed');
    });
  });

  it('a user with publish/subscribe filters (a Tasmota plug) uses its topics and no others', async () => {
    const plug = await login('plug-1');
    expect(await suback(plug, ['cmnd/plug-1/POWER', 'cmnd/plug-2/POWER', '$hw/#'])).toEqual([0, SUBACK_FAILURE, SUBACK_FAILURE]);
    expect(await publishOutcome(plug, 'tele/plug-1/SENSOR', '{"ENERGY":{"Power":5}}')).toBe('puback');
    expect(await publishOutcome(plug, 'stat/plug-1/POWER', 'ON')).toBe('puback');
    expect(await publishOutcome(plug, `${SENSOR}/twin/update`, update('plug', {}))).toBe('closed');
    expect(await publishOutcome(await login('plug-1'), 'tele/plug-2/SENSOR', '{}')).toBe('closed');
  });

  describe('the TLS listener (client certificates optional)', () => {
    const tlsUrl = () => `mqtts://127.0.0.1:${tlsPort}`;
    const ca = () => readFileSync(certificates.ca);
    const withCertificate = (pair: { cert: string; key: string }): IClientOptions => ({ ca: ca(), cert: readFileSync(pair.cert), key: readFileSync(pair.key) });

    it('takes a password login without a client certificate', async () => {
      expect(await connack(tlsUrl(), { ca: ca(), username: 'plug-1', password: PASSWORD })).toBe(0);
      expect(await connack(tlsUrl(), { ca: ca(), username: 'plug-1', password: 'wrong' })).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('logs a client certificate’s CN in as that user, with no password', async () => {
      const mapper = await connect(tlsUrl(), withCertificate(certificates.client('sensor-mapper')));
      const result = await request(mapper, `${SENSOR}/twin/get`, '{"event_id":"tls"}', `${SENSOR}/twin/get/result`);
      expect(result.event_id).toBe('tls');
      expect(await publishOutcome(mapper, `${PLANT}/twin/get`, '{}')).toBe('closed');
      expect(await connack(tlsUrl(), withCertificate(certificates.client('nobody')))).toBe(NOT_AUTHORIZED);
    });
  });
});

describe('locked down: allowAnonymous never, TLS requiring client certificates', () => {
  let agent: TestAgent;
  let url: string;
  let tlsUrl: string;

  beforeAll(async () => {
    const tlsPort = await freePort();
    agent = await startTestAgent({
      config: {
        mqtt: {
          allowAnonymous: 'never',
          users: users(),
          tls: { port: tlsPort, cert: certificates.server.cert, key: certificates.server.key, ca: certificates.ca, requireClientCert: true },
        },
      },
    });
    url = agent.mqttUrl;
    tlsUrl = `mqtts://127.0.0.1:${tlsPort}`;
  });

  afterAll(async () => {
    await agent?.stop();
  });

  it('refuses an anonymous KubeEdge-style mapper on loopback: CONNACK 5', async () => {
    expect(await connack(url)).toBe(NOT_AUTHORIZED);
    const sub = await runMosquitto(MOSQUITTO_SUB, [...hostPort(url), '-t', `${SENSOR}/twin/update/delta`, '-W', '2']);
    expect(sub.stderr).toMatch(/Connection Refused: not authorised/);
  });

  it('lets a user bound to the device update it (mosquitto_pub -u -P), and refuses it on another', async () => {
    const sub = mosquittoSubscribe([...hostPort(url), '-u', 'sensor-mapper', '-P', PASSWORD, '-t', `${SENSOR}/twin/update/result`, '-C', '1', '-W', '5']);
    await sub.subscribed;
    const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-u', 'sensor-mapper', '-P', PASSWORD, '-q', '1', '-t', `${SENSOR}/twin/update`, '-m', update('locked', { count: { actual: { value: '9' } } })]);
    expect(pub.code).toBe(0);
    expect(JSON.parse(await sub.message)).toMatchObject({ event_id: 'locked', twin: { count: { actual: { value: '9' } } } });
    const refused = await runMosquitto(MOSQUITTO_PUB, [...hostPort(url), '-u', 'sensor-mapper', '-P', PASSWORD, '-q', '1', '-t', `${PLANT}/twin/update`, '-m', '{}']);
    expect(refused.stderr).toMatch(/connection was lost/);
  });

  it('refuses a TLS client without a certificate, or with one from another CA, in the handshake; takes one from the CA', async () => {
    /** What a TLS client sees first: connected, or the handshake's error. */
    const handshake = async (options: IClientOptions) => {
      const client = mqtt.connect(tlsUrl, { reconnectPeriod: 0, ca: readFileSync(certificates.ca), ...options });
      let error = 'closed';
      client.on('error', (e) => (error = e.message));
      const outcome = await new Promise<string>((resolve) => {
        client.once('connect', () => resolve('connected'));
        client.once('close', () => setTimeout(() => resolve(error), 50));
      });
      await client.endAsync(true);
      return outcome;
    };
    expect(await handshake({})).toMatch(/alert certificate required/);
    // TLS 1.3: the server judges the certificate after the client's Finished, so the client sees its connection closed, no CONNACK.
    const stranger = certificates.stranger('sensor-mapper');
    expect(await handshake({ cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) })).toBe('closed');
    const mapper = certificates.client('sensor-mapper');
    expect(await handshake({ cert: readFileSync(mapper.cert), key: readFileSync(mapper.key) })).toBe('connected');
  });
});

describe('limits on connections', () => {
  it('answers connections beyond mqtt.maxConnections with CONNACK 3 and takes new ones once some close', async () => {
    const agent = await startTestAgent({ config: { mqtt: { maxConnections: 3 } } });
    try {
      const open = await Promise.all([1, 2, 3].map((n) => connect(agent.mqttUrl, { clientId: `c${n}` })));
      expect(await connack(agent.mqttUrl)).toBe(SERVER_UNAVAILABLE);
      const pub = await runMosquitto(MOSQUITTO_PUB, [...hostPort(agent.mqttUrl), '-t', 'x', '-m', 'x']);
      expect(pub.stderr).toMatch(/Connection Refused: broker unavailable/);
      await open[0]!.endAsync();
      await waitFor('a free connection', async () => (await connack(agent.mqttUrl)) === 0);
    } finally {
      await agent.stop();
    }
  });
});

describe('refusals in the log, warnings at start, config errors', () => {
  function capture() {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    return { lines, log };
  }
  const config = (mqtt: Record<string, unknown>) => parseOrThrow(mqttSection, { port: 0, ...mqtt }, 'mqtt');

  it('warns at start when the broker listens beyond loopback with anonymous clients on loopback', async () => {
    for (const [mqtt, warned] of [
      [{ host: '0.0.0.0' }, true],
      [{ host: '127.0.0.1' }, false],
      [{ host: '0.0.0.0', allowAnonymous: 'never' }, false],
    ] as const) {
      const { lines, log } = capture();
      const bus = new EmbeddedBus({ config: config(mqtt), log });
      await bus.start();
      await bus.stop();
      const warning = lines.find((l) => String(l.msg).includes('listens beyond loopback'));
      expect(warning, JSON.stringify(mqtt)).toEqual(warned ? expect.objectContaining({ level: 40, hosts: ['0.0.0.0'], allowAnonymous: 'loopback' }) : undefined);
    }
  });

  it('bound to :: (dual stack), takes anonymous clients on 127.0.0.1 (as ::ffff:127.0.0.1) and ::1, and refuses them from an IPv6 LAN address', async () => {
    const { log } = capture();
    const bus = new EmbeddedBus({ config: config({ host: '::' }), log });
    await bus.start();
    try {
      const port = portOf(bus.connectUrl);
      expect(await connack(`mqtt://127.0.0.1:${port}`)).toBe(0);
      expect(await connack(`mqtt://[::1]:${port}`)).toBe(0);
      if (LAN_ADDRESS_V6) expect(await connack(`mqtt://[${LAN_ADDRESS_V6}]:${port}`)).toBe(NOT_AUTHORIZED);
    } finally {
      await bus.stop();
    }
  });

  it('logs each refusal with client, address and reason, at most 20 lines per 10 s', async () => {
    const { lines, log } = capture();
    const bus = new EmbeddedBus({ config: config({ allowAnonymous: 'never' }), log });
    await bus.start();
    try {
      for (let i = 0; i < 30; i++) expect(await connack(`mqtt://127.0.0.1:${portOf(bus.url)}`, { clientId: `refused-${i}` })).toBe(NOT_AUTHORIZED);
      const refusals = lines.filter((l) => l.msg === 'mqtt login refused');
      expect(refusals).toHaveLength(20);
      expect(refusals[0]).toMatchObject({ level: 40, client: 'refused-0', address: '127.0.0.1', returnCode: NOT_AUTHORIZED, reason: 'anonymous clients are refused (mqtt.allowAnonymous: never)' });
    } finally {
      await bus.stop();
    }
  });

  it('counts the refusals it left out in the next line it logs', async () => {
    const { lines, log } = capture();
    const refusals = new RefusalLog(log, 2, 50);
    for (let i = 0; i < 5; i++) refusals.refused({ n: i }, 'refused');
    await sleep(60);
    refusals.refused({ n: 5 }, 'refused');
    expect(lines.map((l) => [l.n, l.refusalsNotLogged])).toEqual([
      [0, undefined],
      [1, undefined],
      [5, 3],
    ]);
  });

  it('refuses to start on an unreadable passwordFile or TLS file, naming the setting', async () => {
    const { log } = capture();
    const missing = join(dir, 'missing');
    const noHash = join(dir, 'plain-password');
    writeFileSync(noHash, 'secret\n');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ users: [{ username: 'u', passwordFile: missing }] }, /^mqtt\.users\[0\]\.passwordFile: cannot read .*missing/],
      [{ users: [{ username: 'u', passwordFile: noHash }] }, /^mqtt\.users\[0\]\.passwordFile: .* does not hold a hash printed by edge-agent passwd/],
      [{ tls: { port: 0, cert: missing, key: missing } }, /^mqtt\.tls\.cert: cannot read/],
    ];
    for (const [mqtt, message] of cases) {
      const bus = new EmbeddedBus({ config: config(mqtt), log });
      const error = await bus.start().then(() => undefined, (e: unknown) => e);
      await bus.stop();
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('refuses configs that cannot be run, naming the setting', () => {
    const refused = (mqtt: Record<string, unknown>) => {
      try {
        resolveConfig({ flags: { mqtt } });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ allowAnonymous: 'lan' })).toMatch(/^config: mqtt\.allowAnonymous: /);
    expect(refused({ users: [{ username: 'u', passwordHash: 'secret' }] })).toMatch(/mqtt\.users\.0\.passwordHash: expected a hash printed by edge-agent passwd/);
    expect(refused({ users: [{ username: 'u', passwordHash: hash, passwordFile: '/x' }] })).toMatch(/mqtt\.users\.0: passwordHash and passwordFile exclude each other/);
    expect(refused({ users: [{ username: 'u' }] })).toMatch(/mqtt\.users: a user without passwordHash or passwordFile can log in only with a client certificate/);
    expect(refused({ users: [{ username: 'u', passwordHash: hash }, { username: 'u', passwordHash: hash }] })).toMatch(/mqtt\.users: each username once/);
    expect(refused({ users: [{ username: '$edge-agent', passwordHash: hash }] })).toMatch(/mqtt\.users\.0\.username: names starting with \$/);
    expect(refused({ users: [{ username: 'u', passwordHash: hash, devices: ['sensor-01'] }] })).toMatch(/mqtt\.users\.0\.devices\.0: expected NS\/NAME or NS\/\*/);
    expect(refused({ users: [{ username: 'u', passwordHash: hash, publish: ['a/#/b'] }] })).toMatch(/mqtt\.users\.0\.publish\.0: must be an MQTT topic filter/);
    expect(refused({ tls: { cert: '/c', key: '/k', requireClientCert: true } })).toMatch(/mqtt\.tls: requireClientCert needs ca/);
    expect(refused({ maxPayloadBytes: 300_000 })).toMatch(/mqtt\.maxPayloadBytes: must be below maxPacketBytes/);
    expect(refused({ url: 'mqtt://broker:1883', users: [{ username: 'u', passwordHash: hash }] })).toMatch(/mqtt\.url: users and tls are the embedded broker’s/);
    // A URL that fails to parse is not echoed: it may hold a password.
    expect(refused({ url: 'mqtt://edge:s3cret@' })).not.toContain('s3cret');
  });
});

describe('an external broker’s password', () => {
  it('stays out of bus.url, GET /healthz and the log, also across reconnects', async () => {
    const broker = await startMosquitto();
    const secretUrl = `mqtt://edge:s3cret-pw@127.0.0.1:${broker.port}`;
    const agent = await startTestAgent({ mqttUrl: secretUrl });
    try {
      expect(agent.agent.bus.url).toBe(`mqtt://edge:***@127.0.0.1:${broker.port}`);
      expect(agent.agent.bus.connectUrl).toBe(secretUrl);
      const health = await (await fetch(`${agent.apiUrl}/healthz`)).text();
      expect(health).toContain('edge:***@');
      expect(health).not.toContain('s3cret');
    } finally {
      await agent.stop();
    }

    // Given in the environment, as a password on the command line would show in /proc/<pid>/cmdline.
    const dataDir = tempDir();
    const child = await spawnAgent(['--data', dataDir, '--profiles', TEST_PROFILES], { EDGE_AGENT_MQTT__URL: secretUrl });
    let output = '';
    child.child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      expect(child.mqttUrl).not.toContain('s3cret');
      await broker.stop();
      await waitFor('a reconnect logged', () => output.includes('reconnecting to external broker'), { timeoutMs: 10_000 });
      expect(output).not.toContain('s3cret');
    } finally {
      child.child.kill('SIGTERM');
      await child.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('edge-agent passwd', () => {
  const passwd = (input: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'passwd'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });

  it('prints on one line a salted scrypt hash of the first line it reads', async () => {
    const first = await passwd(`${PASSWORD}\n`);
    const second = await passwd(PASSWORD);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$/);
    expect(second.stdout).not.toBe(first.stdout);
    for (const { stdout } of [first, second]) {
      const parsed = parsePasswordHash(stdout)!;
      expect(await verifyPassword(parsed, PASSWORD)).toBe(true);
      expect(await verifyPassword(parsed, `${PASSWORD} `)).toBe(false);
    }
  });

  it('refuses an empty password', async () => {
    const empty = await passwd('\n');
    expect(empty.code).toBe(2);
    expect(empty.stdout).toBe('');
    expect(empty.stderr).toMatch(/no password given/);
  });
});
