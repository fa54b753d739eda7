/**
 * The embedded aedes broker. Agent handlers run in aedes' authorizePublish hook, which comes
 * before the QoS 1 PUBACK: aedes writes the PUBACK before it fans a message out, so this is
 * the one place where "acknowledged" can mean "persisted". Who may connect and do what is
 * policy.ts's: the hooks here only ask it, so the broker stays the library's.
 */
import { Aedes, type AedesOptions, type Client, type Subscription } from 'aedes';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:net';
import type { Logger } from '../log.js';
import { MODULE } from '../module.js';
import { Authenticator, CONNACK } from './auth.js';
import { handlerFailed, HandlerTable, type Bus, type MessageHandler } from './bus.js';
import { AGENT_USERNAME, type MqttConfig } from './config.js';
import { closeListeners, openListeners, warnExposure } from './listeners.js';
import { boundOfflineQueues, type OutgoingQueues } from './offline-queues.js';
import { BrokerPolicy } from './policy.js';
import { SubscriberIndex } from './subscribers.js';

export interface EmbeddedBusOptions {
  config: MqttConfig;
  log: Logger;
}

/** What the broker has done since it started, for the metrics: read when scraped, counted with a plain increment. */
export interface BrokerStats {
  /** Clients connected now. */
  clients: number;
  /** Messages clients published (those the broker refused too). */
  received: number;
  /** Messages the agent itself published. */
  published: number;
}

/** A SUBACK return code: the subscription was refused [MQTT-3.9.3]. */
const SUBACK_FAILURE = 128;

/** Where the agent's own clients reach the broker: a wildcard bind is reached on loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

export class EmbeddedBus implements Bus {
  readonly name = MODULE.bus;
  private readonly handlers = new HandlerTable();
  private readonly subscribers = new SubscriberIndex<object>();
  /** The agent's own clients (the mqtt mapper) log in with it; made anew at each start, it never leaves the process. */
  private readonly agentPassword = randomBytes(24).toString('hex');
  private broker?: Aedes;
  private servers: Server[] = [];
  private port: number;
  private received = 0;
  private published = 0;

  constructor(private readonly options: EmbeddedBusOptions) {
    this.port = options.config.port;
  }

  get url(): string {
    return `mqtt://${this.options.config.host}:${this.port}`;
  }

  get connectUrl(): string {
    return `mqtt://${encodeURIComponent(AGENT_USERNAME)}:${this.agentPassword}@${connectHost(this.options.config.host)}:${this.port}`;
  }

  handle(filter: string, handler: MessageHandler) {
    return this.handlers.add(filter, handler);
  }

  /** Listens only once the handlers exist, so no device message is acknowledged unhandled. */
  async start(): Promise<void> {
    const { config, log } = this.options;
    const policy = new BrokerPolicy({
      config,
      authenticator: new Authenticator(config, this.agentPassword),
      // aedes keeps its connected clients by id (`clients`, untyped): the registry its own takeover uses.
      connectedClient: (id) => (this.broker as { clients?: Record<string, Client | undefined> } | undefined)?.clients?.[id],
      log,
    });
    // KubeEdge mappers use client ids longer than MQTT 3.1's 23 characters.
    const broker = await Aedes.createBroker({ ...this.hooks(policy), maxClientsIdLength: 256 });
    this.broker = broker;
    // aedes' memory persistence (`broker.persistence`, untyped) queues for away sessions without a limit.
    boundOfflineQueues((broker as unknown as { persistence: OutgoingQueues }).persistence, { maxMessages: config.maxQueuedMessages, maxBytes: config.maxQueuedBytes }, (clientId, reason) =>
      policy.notQueued(clientId, reason),
    );
    broker.on('clientError', (client, error) => log.debug({ client: client.id, err: error.message }, 'mqtt client error'));
    // The list holds the refused subscriptions too, with the SUBACK failure code as their QoS.
    const granted = (subscriptions: Subscription[]) => subscriptions.filter((s) => (s.qos as number) !== SUBACK_FAILURE).map((s) => s.topic);
    broker.on('subscribe', (subscriptions, client) => this.subscribers.subscribe(client, granted(subscriptions)));
    broker.on('unsubscribe', (filters, client) => {
      this.subscribers.unsubscribe(client, filters);
      policy.unsubscribed(client, filters);
    });
    broker.on('clientDisconnect', (client) => this.subscribers.disconnect(client));
    const listeners = await openListeners(
      config,
      (socket, peer) => policy.accept(socket, peer, broker.handle),
      (address, reason) => policy.handshakeRefused(address, reason),
    );
    this.servers = listeners.servers;
    this.port = listeners.port;
    warnExposure(config, log);
  }

  /** The aedes hooks: each asks the policy; publishes it allows reach the agent's handlers. */
  private hooks(policy: BrokerPolicy): Pick<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward'> {
    const { log } = this.options;
    const onError = handlerFailed(log);
    return {
      preConnect: (client, packet, callback) => {
        policy.connecting(client, packet.keepalive ?? 0);
        callback(null, true);
      },
      authenticate: (client, username, password, callback) => {
        policy.login(client, username, password).then((refusal) => {
          if (!refusal) return callback(null, true);
          callback(Object.assign(new Error(refusal.reason), { returnCode: refusal.returnCode as 2 | 3 | 4 | 5 }), false);
        }, (error: unknown) => callback(Object.assign(error as Error, { returnCode: CONNACK.serverUnavailable }), false));
      },
      // A refused publish closes the connection: MQTT 3.1.1 has no negative PUBACK [MQTT-3.3.5-2].
      authorizePublish: (client, packet, callback) => {
        if (client) this.received++;
        const refusal = policy.publishRefusal(client, packet);
        if (refusal) return callback(new Error(refusal));
        if (!client) return callback(null);
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        const handled = this.handlers.dispatch(packet.topic, payload, onError);
        if (!handled) return callback(null);
        // QoS 0 is never acknowledged, so nothing waits for its commit; holding the packet until
        // then would only keep a flood of them in memory. Its failure is reported by dispatch.
        if (packet.qos === 0) return callback(null);
        // Not committed: no PUBACK, and the connection closes, so the client sends it again [MQTT-4.4.0-1].
        handled.then(() => callback(null), (error: Error) => callback(error));
      },
      // A refused subscription gets 0x80 in the SUBACK; the connection stays.
      authorizeSubscribe: (client, subscription, callback) => callback(null, policy.subscribeRefusal(client, subscription.topic) ? null : subscription),
      authorizeForward: (client, packet) => (policy.mayDeliver(client, packet.topic) ? packet : null),
    };
  }

  wants(topic: string): boolean {
    return this.subscribers.hasSubscriber(topic);
  }

  publish(topic: string, payload: string | Buffer): void {
    this.published++;
    this.broker?.publish({ cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false }, (error) => {
      if (error) this.options.log.warn({ topic, err: error.message }, 'publish failed');
    });
  }

  stats(): BrokerStats {
    return { clients: this.broker?.connectedClients ?? 0, received: this.received, published: this.published };
  }

  async stop(): Promise<void> {
    const { servers, broker } = this;
    const serversClosed = closeListeners(servers);
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    await serversClosed;
  }
}
