/**
 * The embedded aedes broker. Agent handlers run in aedes' authorizePublish hook, which comes
 * before the QoS 1 PUBACK: aedes writes the PUBACK before it fans a message out, so this is
 * the one place where "acknowledged" can mean "persisted".
 */
import { Aedes, type AuthorizePublishHandler } from 'aedes';
import { createServer, type Server } from 'node:net';
import type { Logger } from '../log.js';
import { MODULE } from '../module.js';
import { HandlerTable, type Bus, type MessageHandler } from './bus.js';
import { SubscriberIndex } from './subscribers.js';

export interface EmbeddedBusOptions {
  host: string;
  port: number;
  log: Logger;
}

export class EmbeddedBus implements Bus {
  readonly name = MODULE.bus;
  private readonly handlers = new HandlerTable();
  private readonly subscribers = new SubscriberIndex<object>();
  private broker?: Aedes;
  private server?: Server;
  private port: number;

  constructor(private readonly options: EmbeddedBusOptions) {
    this.port = options.port;
  }

  get url(): string {
    return `mqtt://${this.options.host}:${this.port}`;
  }

  handle(filter: string, handler: MessageHandler) {
    return this.handlers.add(filter, handler);
  }

  /** Listens only once the handlers exist, so no device message is acknowledged unhandled. */
  async start(): Promise<void> {
    const { log, host } = this.options;
    const onError = (error: unknown, topic: string) => log.error({ topic, err: error }, 'bus handler failed');
    const authorizePublish: AuthorizePublishHandler = (client, packet, callback) => {
      if (!client) return callback(null);
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const handled = this.handlers.dispatch(packet.topic, payload, onError);
      // QoS 0 is never acknowledged, so nothing waits for its commit; holding the packet until
      // then would only keep a flood of them in memory.
      if (!handled || packet.qos === 0) callback(null);
      else handled.then(() => callback(null));
    };
    // KubeEdge mappers use client ids longer than MQTT 3.1's 23 characters.
    const broker = await Aedes.createBroker({ authorizePublish, maxClientsIdLength: 256 });
    this.broker = broker;
    broker.on('clientError', (client, error) => log.debug({ client: client.id, err: error.message }, 'mqtt client error'));
    broker.on('subscribe', (subscriptions, client) => this.subscribers.subscribe(client, subscriptions.map((s) => s.topic)));
    broker.on('unsubscribe', (filters, client) => this.subscribers.unsubscribe(client, filters));
    broker.on('clientDisconnect', (client) => this.subscribers.disconnect(client));
    const server = createServer(broker.handle);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (typeof address === 'object' && address) this.port = address.port;
  }

  wants(topic: string): boolean {
    return this.subscribers.hasSubscriber(topic);
  }

  publish(topic: string, payload: string | Buffer): void {
    this.broker?.publish({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false }, (error) => {
      if (error) this.options.log.warn({ topic, err: error.message }, 'publish failed');
    });
  }

  async stop(): Promise<void> {
    const { server, broker } = this;
    const serverClosed = server?.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    await serverClosed;
  }
}
