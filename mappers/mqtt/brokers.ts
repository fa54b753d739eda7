/**
 * One mqtt client per broker (URL and credentials), shared by the devices on it through the
 * host's transport pool, with one subscription per topic however many properties and devices
 * listen to it. A client lives as long as one device uses it; mqtt.js reconnects it and renews
 * its subscriptions.
 */
import { readFile } from 'node:fs/promises';
import type { IClientOptions, MqttClient } from 'mqtt';
import type { Logger } from '../../src/log.js';
import type { TransportPool } from '../../src/mapperhost/transports.js';
import { redactUrl } from '../../src/redact.js';
import type { ProtocolConfig } from './config.js';

const CONNECT_TIMEOUT_MS = 5000;
const RECONNECT_MS = 5000;

export type Listener = (payload: Buffer) => void;

export interface Broker {
  readonly url: string;
  readonly connected: boolean;
  subscribe(topic: string, qos: 0 | 1 | 2, listener: Listener): Promise<void>;
  unsubscribe(topic: string, listener: Listener): void;
  publish(topic: string, payload: string, options: { qos: 0 | 1 | 2; retain: boolean }): Promise<void>;
  release(): Promise<void>;
}

/** What the devices on one broker share: the client, and the listeners of each subscribed topic. */
interface SharedClient {
  client: MqttClient;
  topics: Map<string, Set<Listener>>;
}

/** A file the device's configData names (`passwordFile`, `ca`, `cert`, `key`), read when its broker connects. */
async function readSetting(path: string, setting: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new Error(`cannot read the mqtt ${setting} file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** The client options from the device's configData; files are read here, so a changed one counts at the next connect. */
async function clientOptions(config: ProtocolConfig): Promise<IClientOptions> {
  const options: IClientOptions = { reconnectPeriod: RECONNECT_MS, connectTimeout: CONNECT_TIMEOUT_MS };
  if (config.username !== undefined) options.username = config.username;
  if (config.password !== undefined) options.password = config.password;
  if (config.passwordFile !== undefined) options.password = (await readSetting(config.passwordFile, 'passwordFile')).toString('utf8').replace(/\r?\n$/, '');
  if (config.clientId !== undefined) options.clientId = config.clientId;
  if (config.ca !== undefined) options.ca = await readSetting(config.ca, 'ca');
  if (config.cert !== undefined) options.cert = await readSetting(config.cert, 'cert');
  if (config.key !== undefined) options.key = await readSetting(config.key, 'key');
  return options;
}

async function open(url: string, config: ProtocolConfig, log: Logger): Promise<SharedClient> {
  const topics = new Map<string, Set<Listener>>();
  const { connect } = await import('mqtt');
  const client = connect(url, await clientOptions(config));
  const shown = redactUrl(url);
  await new Promise<void>((resolve, reject) => {
    const fail = (error: Error) => {
      clearTimeout(timer);
      client.off('connect', ok);
      client.end(true);
      reject(new Error(`cannot connect to mqtt broker ${shown}: ${error.message}`));
    };
    const timer = setTimeout(() => fail(new Error(`no CONNACK within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    const ok = () => {
      clearTimeout(timer);
      client.off('error', fail);
      resolve();
    };
    client.once('connect', ok);
    client.once('error', fail);
  });
  // Logged once per transition, not once per reconnect attempt.
  let up = true;
  client.on('error', (error) => log.debug({ broker: shown, err: error.message }, 'mqtt broker error'));
  client.on('offline', () => {
    if (up) log.warn({ broker: shown }, 'mqtt broker connection lost; reconnecting');
    up = false;
  });
  client.on('connect', () => {
    if (!up) log.info({ broker: shown }, 'mqtt broker connection back');
    up = true;
  });
  client.on('message', (topic, payload) => {
    for (const listener of topics.get(topic) ?? []) listener(payload);
  });
  return { client, topics };
}

export async function acquire(pool: TransportPool, url: string, config: ProtocolConfig, log: Logger): Promise<Broker> {
  // Devices share a client only when they connect the same way; the key is never shown.
  const key = `mqtt:${JSON.stringify([url, config.username, config.password, config.passwordFile, config.clientId, config.ca, config.cert, config.key])}`;
  const lease = await pool.acquire(key, () => open(url, config, log), (shared) => shared.client.endAsync());
  const { client, topics } = lease.transport;
  return {
    url: redactUrl(url),
    get connected() {
      return client.connected;
    },
    async subscribe(topic, qos, listener) {
      const listeners = topics.get(topic);
      if (listeners) {
        listeners.add(listener);
        return;
      }
      topics.set(topic, new Set([listener]));
      try {
        const granted = await client.subscribeAsync(topic, { qos });
        if (granted.some((g) => g.qos === 128)) throw new Error(`mqtt broker ${redactUrl(url)} refused the subscription to ${topic}`);
      } catch (error) {
        topics.delete(topic);
        throw error;
      }
    },
    unsubscribe(topic, listener) {
      const listeners = topics.get(topic);
      if (!listeners?.delete(listener) || listeners.size > 0) return;
      topics.delete(topic);
      if (client.connected) client.unsubscribeAsync(topic).catch(() => undefined);
    },
    async publish(topic, payload, options) {
      if (!client.connected) throw new Error(`not connected to mqtt broker ${redactUrl(url)}`);
      await client.publishAsync(topic, payload, options);
    },
    release: lease.release,
  };
}
