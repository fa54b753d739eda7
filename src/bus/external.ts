/**
 * An external broker (Mosquitto, or EdgeCore's own) through the mqtt client. The agent's
 * session is persistent and subscribes at QoS 1; a message is acknowledged to the broker only
 * after its handler has finished, so the broker redelivers what the agent had not persisted.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from '../log.js';
import { MODULE } from '../module.js';
import { redactUrl } from '../redact.js';
import { handlerFailed, HandlerTable, type Bus, type MessageHandler } from './bus.js';

export class ExternalBus implements Bus {
  readonly name = MODULE.bus;
  /** The broker's URL without its password, for logs and `GET /healthz`. */
  readonly url: string;
  private readonly handlers = new HandlerTable();
  private client?: MqttClient;

  /** `connectUrl` may carry the broker's password (`mqtt://user:password@host`). */
  constructor(
    readonly connectUrl: string,
    private readonly clientId: string,
    private readonly log: Logger,
  ) {
    this.url = redactUrl(connectUrl);
  }

  handle(filter: string, handler: MessageHandler) {
    const remove = this.handlers.add(filter, handler);
    this.client?.subscribeAsync(filter, { qos: 1 }).catch((error: Error) => this.log.warn({ filter, err: error.message }, 'subscribing failed'));
    return remove;
  }

  async start(): Promise<void> {
    const { url, log } = this;
    const onError = handlerFailed(log);
    // Connecting waits for the handlers: the persistent session delivers queued messages right
    // after CONNACK, and they must find their handlers, or they would be acknowledged and dropped.
    const client = mqtt.connect(this.connectUrl, { clientId: this.clientId, clean: false, reconnectPeriod: 1000, manualConnect: true });
    this.client = client;
    client.handleMessage = (packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const handled = this.handlers.dispatch(packet.topic, payload, onError);
      if (!handled) return callback();
      handled.then(
        () => callback(),
        (error: Error) => {
          // Not committed: no PUBACK, and a new connection, on which the broker sends it again [MQTT-4.4.0-1].
          callback(error);
          client.stream.destroy();
        },
      );
    };
    client.on('error', (error) => log.warn({ url, err: error.message }, 'external broker error'));
    client.on('reconnect', () => log.info({ url }, 'reconnecting to external broker'));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.connect();
    });
    log.info({ url }, 'connected to external broker');
    if (this.handlers.filters.length > 0) await client.subscribeAsync(this.handlers.filters, { qos: 1 });
  }

  wants(): boolean {
    // Another broker's subscribers are not known here.
    return true;
  }

  publish(topic: string, payload: string | Buffer): void {
    // As EdgeCore towards an external broker: PubCli.Publish(topic, 1, false, payload).
    this.client?.publish(topic, payload, { qos: 1, retain: false });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
  }
}
