/**
 * An external broker (Mosquitto, or EdgeCore's own) through the mqtt client. The agent's
 * session is persistent and subscribes at QoS 1; a message is acknowledged to the broker only
 * after its handler has finished, so the broker redelivers what the agent had not persisted.
 */
import mqtt from 'mqtt';
import type { Logger } from '../log.js';
import { HandlerTable, type Bus, type MessageHandler } from './bus.js';

export function connectExternalBus(url: string, clientId: string, log: Logger): Bus {
  const handlers = new HandlerTable();
  const onError = (error: unknown, topic: string) => log.error({ topic, err: error }, 'bus handler failed');
  // Connecting waits for start(): the persistent session delivers queued messages right after
  // CONNACK, and they must find their handlers, or they would be acknowledged and dropped.
  const client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 1000, manualConnect: true });
  client.handleMessage = (packet, callback) => {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const handled = handlers.dispatch(packet.topic, payload, onError);
    if (handled) handled.then(() => callback());
    else callback();
  };
  client.on('error', (error) => log.warn({ url, err: error.message }, 'external broker error'));
  client.on('reconnect', () => log.info({ url }, 'reconnecting to external broker'));

  return {
    url,
    async handle(filter: string, handler: MessageHandler) {
      handlers.add(filter, handler);
      if (client.connected) await client.subscribeAsync(filter, { qos: 1 });
    },
    async start() {
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
        client.connect();
      });
      log.info({ url }, 'connected to external broker');
      if (handlers.filters.length > 0) await client.subscribeAsync(handlers.filters, { qos: 1 });
    },
    wants() {
      // Another broker's subscribers are not known here.
      return true;
    },
    publish(topic: string, payload: string | Buffer) {
      // As EdgeCore towards an external broker: PubCli.Publish(topic, 1, false, payload).
      client.publish(topic, payload, { qos: 1, retain: false });
    },
    async close() {
      await client.endAsync();
    },
  };
}
