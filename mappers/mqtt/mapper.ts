/**
 * The mqtt mapper: devices that publish their own MQTT topics (Tasmota, Shelly, zigbee2mqtt).
 * A property's value is the last good one received on its visitor's `stateTopic` (the raw
 * payload, or the value at `jsonPath` in its JSON); writes publish `commandTemplate` with
 * `{{value}}` filled in on `commandTopic`. The broker is the device's configData `url` (TLS
 * with `ca`, `cert`, `key`; a login with `username` and `password` or `passwordFile`, which is
 * never logged), else the agent's own bus. The mqtt package is loaded only once an mqtt device
 * connects.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, Mapper, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import type { Logger } from '../../src/log.js';
import { timedOut, withTimeout } from '../../src/timeout.js';
import { describeIssues, valueOrThrow } from '../../src/mapperhost/device-config.js';
import { acquire, type Broker, type Listener } from './brokers.js';
import { extract, parseMqtt, render, type VisitorConfig } from './config.js';

const SUBSCRIBE_TIMEOUT_MS = 5000;
const LOGGED_MALFORMED = 10;

interface Bound {
  name: string;
  config: VisitorConfig;
}

export class MqttDeviceConnection implements DeviceConnection {
  /** Messages that gave no value for some property on their topic (bad JSON, missing path, wrong shape). */
  malformed = 0;
  private readonly values = new Map<string, PropertyValue>();
  private readonly listeners = new Map<string, Listener>();

  constructor(
    private readonly broker: Broker,
    private readonly properties: Map<string, Bound>,
    private readonly log: Logger,
  ) {}

  async subscribe(): Promise<void> {
    const byTopic = new Map<string, Bound[]>();
    for (const p of this.properties.values()) {
      if (p.config.stateTopic === undefined) continue;
      byTopic.set(p.config.stateTopic, [...(byTopic.get(p.config.stateTopic) ?? []), p]);
    }
    for (const [topic, bound] of byTopic) {
      const listener: Listener = (payload) => this.receive(topic, payload.toString(), bound);
      this.listeners.set(topic, listener);
      const qos = Math.max(...bound.map((p) => p.config.qos ?? 0)) as 0 | 1 | 2;
      await this.broker.subscribe(topic, qos, listener);
    }
  }

  /** One JSON parse per message, however many properties read from it; failures never replace a good value. */
  private receive(topic: string, payload: string, bound: Bound[]): void {
    let json: unknown;
    let parsed = true;
    const errors: string[] = [];
    if (bound.some((p) => p.config.jsonPath !== undefined)) {
      try {
        json = JSON.parse(payload);
      } catch {
        parsed = false;
        errors.push('payload is not JSON');
      }
    }
    for (const p of bound) {
      if (!parsed && p.config.jsonPath !== undefined) continue;
      try {
        this.values.set(p.name, extract(payload, json, p.config.jsonPath));
      } catch (error) {
        errors.push(`${p.name}: ${(error as Error).message}`);
      }
    }
    if (errors.length === 0) return;
    this.malformed++;
    // A device stuck on a bad payload must not flood the log: the first few, then every 100th.
    if (this.malformed > LOGGED_MALFORMED && this.malformed % 100 !== 0) return;
    this.log.warn({ topic, malformed: this.malformed, err: errors.join('; '), payload: payload.slice(0, 200) }, 'malformed mqtt payload ignored');
  }

  read(property: BoundProperty): Promise<PropertyValue> {
    const value = this.lastValue(property);
    return value instanceof Error ? Promise.reject(value) : Promise.resolve(value);
  }

  /** The last values received are at hand: a group is read at once, under one deadline instead of one per property. */
  readMany(properties: BoundProperty[]): Promise<Array<PropertyValue | Error>> {
    return Promise.resolve(properties.map((property) => this.lastValue(property)));
  }

  private lastValue(property: BoundProperty): PropertyValue | Error {
    const bound = this.properties.get(property.name);
    if (!bound?.config.stateTopic) return new Error(`property ${property.name} has no stateTopic`);
    if (!this.broker.connected) return new Error(`not connected to mqtt broker ${this.broker.url}`);
    const value = this.values.get(property.name);
    if (value === undefined) return new Error(`no value received yet on ${bound.config.stateTopic}`);
    return value;
  }

  async write(property: BoundProperty, value: PropertyValue): Promise<void> {
    const config = this.properties.get(property.name)?.config;
    if (!config?.commandTopic) throw new Error(`property ${property.name} is not writable: its visitor has no commandTopic`);
    await this.broker.publish(config.commandTopic, render(config.commandTemplate ?? '{{value}}', value), { qos: config.qos ?? 0, retain: config.retain ?? false });
  }

  async close(): Promise<void> {
    for (const [topic, listener] of this.listeners) this.broker.unsubscribe(topic, listener);
    this.listeners.clear();
    await this.broker.release();
  }
}

export const mqttMapper: Mapper = {
  protocols: ['mqtt'],
  validate: (device, model) => describeIssues(parseMqtt(device, model)),
  async connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection> {
    const { protocol, visitors } = valueOrThrow(parseMqtt(device, model));
    const properties = new Map([...visitors].map(([name, { visitor }]): [string, Bound] => [name, { name, config: visitor }]));
    const broker = await acquire(context.transports, protocol.url ?? context.busUrl, protocol, context.log);
    const connection = new MqttDeviceConnection(broker, properties, context.log);
    try {
      await withTimeout(connection.subscribe(), SUBSCRIBE_TIMEOUT_MS, timedOut(`subscribing on ${broker.url}`, SUBSCRIBE_TIMEOUT_MS));
    } catch (error) {
      await connection.close();
      throw error;
    }
    return connection;
  },
};
