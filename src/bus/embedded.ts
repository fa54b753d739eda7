/**
 * The embedded aedes broker. Agent handlers run in aedes' authorizePublish hook, which comes
 * before the QoS 1 PUBACK: aedes writes the PUBACK before it fans a message out, so this is
 * the one place where "acknowledged" can mean "persisted".
 */
import { Aedes, type AuthorizePublishHandler } from 'aedes';
import { createServer, type Server } from 'node:net';
import type { Logger } from '../log.js';
import { HandlerTable, type Bus, type MessageHandler } from './bus.js';
import { SubscriberIndex } from './subscribers.js';

export interface EmbeddedBusOptions {
  host: string;
  port: number;
  log: Logger;
}

export async function createEmbeddedBus(options: EmbeddedBusOptions): Promise<Bus> {
  const handlers = new HandlerTable();
  const onError = (error: unknown, topic: string) => options.log.error({ topic, err: error }, 'bus handler failed');
  const authorizePublish: AuthorizePublishHandler = (client, packet, callback) => {
    if (!client) return callback(null);
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const handled = handlers.dispatch(packet.topic, payload, onError);
    // QoS 0 is never acknowledged, so nothing waits for its commit; holding the packet until
    // then would only keep a flood of them in memory.
    if (!handled || packet.qos === 0) callback(null);
    else handled.then(() => callback(null));
  };
  // KubeEdge mappers use client ids longer than MQTT 3.1's 23 characters.
  const broker = await Aedes.createBroker({ authorizePublish, maxClientsIdLength: 256 });
  broker.on('clientError', (client, error) => options.log.debug({ client: client.id, err: error.message }, 'mqtt client error'));
  const subscribers = new SubscriberIndex<object>();
  broker.on('subscribe', (subscriptions, client) => subscribers.subscribe(client, subscriptions.map((s) => s.topic)));
  broker.on('unsubscribe', (filters, client) => subscribers.unsubscribe(client, filters));
  broker.on('clientDisconnect', (client) => subscribers.disconnect(client));
  const server: Server = createServer(broker.handle);
  let port = options.port;

  return {
    get url() {
      return `mqtt://${options.host}:${port}`;
    },
    async handle(filter: string, handler: MessageHandler) {
      handlers.add(filter, handler);
    },
    /** Listens only once the handlers exist, so no device message is acknowledged unhandled. */
    async start() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port, options.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address();
      if (typeof address === 'object' && address) port = address.port;
    },
    wants(topic: string) {
      return subscribers.hasSubscriber(topic);
    },
    publish(topic: string, payload: string | Buffer) {
      broker.publish({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false }, (error) => {
        if (error) options.log.warn({ topic, err: error.message }, 'publish failed');
      });
    },
    async close() {
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await serverClosed;
    },
  };
}
