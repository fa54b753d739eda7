/**
 * What the embedded broker lets each client do, as its aedes hooks ask (embedded.ts): who logs
 * in (auth.ts), what it may publish, subscribe to and receive (rights.ts), and the limits on
 * what one client can make the broker hold (limits.ts). For every client, whoever it is, three
 * rules hold: no publishing on the topics the agent answers on (the agent itself publishes
 * through `broker.publish`, past the hooks), no retained messages under `$hw/`, and no taking
 * over a connected client's id from another identity or address. Each refusal is logged
 * (rate-limited) with the client id, identity and address.
 */
import type { Client } from 'aedes';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { CONNACK, type Authenticator, type Identity, type LoginRefusal, type Peer } from './auth.js';
import type { MqttConfig } from './config.js';
import { ConnectionLimit, limitPacketSize, PersistentSessions, RetainedBudget } from './limits.js';
import { RefusalLog } from './refusals.js';
import { isAgentAnswer } from './topics.js';

/** How much of a client-chosen string (client id, user name, topic) a log line keeps. */
const LOGGED_CHARS = 200;

/** What the broker knows of one connection's client. */
interface Session {
  peer: Peer;
  /** Seconds, as the CONNECT asked. */
  keepalive: number;
  /** Set once logged in. */
  identity?: Identity;
  subscriptions: Set<string>;
}

export interface PolicyOptions {
  config: MqttConfig;
  authenticator: Authenticator;
  /** The connected client with this id, from aedes' own registry (the one its takeover uses). */
  connectedClient(id: string): Client | undefined;
  log: Logger;
}

export class BrokerPolicy {
  private readonly config: MqttConfig;
  private readonly peers = new WeakMap<object, Peer>();
  private readonly sessions = new WeakMap<Client, Session>();
  private readonly connections: ConnectionLimit;
  private readonly retained: RetainedBudget;
  private readonly persistent: PersistentSessions;
  private readonly refusals: RefusalLog;

  constructor(private readonly options: PolicyOptions) {
    this.config = options.config;
    this.connections = new ConnectionLimit(this.config.maxConnections);
    this.retained = new RetainedBudget(this.config.maxRetainedMessages, this.config.maxRetainedBytes);
    this.persistent = new PersistentSessions(this.config.maxPersistentSessions);
    this.refusals = new RefusalLog(options.log);
  }

  /** A new connection: refused with CONNACK 3 beyond maxConnections, else handed to aedes (`handle`) with its packet sizes watched. */
  accept(socket: Socket, peer: Peer, handle: (socket: Socket) => void): void {
    if (!this.connections.admit(socket)) {
      this.refused({ peer }, 'mqtt connection refused', `mqtt.maxConnections (${this.config.maxConnections}) are open`);
      return;
    }
    this.peers.set(socket, peer);
    handle(socket);
    limitPacketSize(socket, this.config.maxPacketBytes, (reason) => this.refused({ peer }, 'mqtt connection cut', reason));
  }

  /** At CONNECT, before login: what login needs of the packet. */
  connecting(client: Client, keepalive: number): void {
    this.sessions.set(client, { peer: this.peers.get(client.conn) ?? { address: 'unknown' }, keepalive, subscriptions: new Set() });
  }

  /** Logs the client in, or says why not (its CONNACK return code and the reason logged). */
  async login(client: Client, username: string | undefined, password: Buffer | undefined): Promise<LoginRefusal | undefined> {
    const session = this.sessions.get(client);
    if (!session) return { returnCode: CONNACK.serverUnavailable, reason: 'CONNECT without a connection' };
    const refusal = await this.identify(client, session, username, password);
    if (refusal) this.refused({ client, session }, 'mqtt login refused', refusal.reason, { username: username?.slice(0, LOGGED_CHARS), returnCode: refusal.returnCode });
    return refusal;
  }

  private async identify(client: Client, session: Session, username: string | undefined, password: Buffer | undefined): Promise<LoginRefusal | undefined> {
    const identity = await this.options.authenticator.login(session.peer, username, password);
    if ('returnCode' in identity) return identity;
    const { maxKeepaliveSeconds } = this.config;
    // MQTT 3.1.1 has no code for a keepalive the server will not take; Mosquitto answers this one
    // too. The agent's own client is left alone: mqtt.js asks 60 s whatever the limit.
    if (!identity.agent && (session.keepalive < 1 || session.keepalive > maxKeepaliveSeconds)) {
      return { returnCode: CONNACK.identifierRejected, reason: `keepalive of ${session.keepalive} s: must be 1 to ${maxKeepaliveSeconds} s (mqtt.maxKeepaliveSeconds)` };
    }
    const refusal = this.takeover(client, identity, session.peer) ?? this.keptSession(client);
    if (!refusal) session.identity = identity;
    return refusal;
  }

  private keptSession(client: Client): LoginRefusal | undefined {
    if (this.persistent.admit(client.id, client.clean)) return undefined;
    return { returnCode: CONNACK.serverUnavailable, reason: `the broker keeps mqtt.maxPersistentSessions (${this.config.maxPersistentSessions}) sessions: connect with clean: true, or with the id of a kept one` };
  }

  /** [MQTT-3.1.4-2] lets a new connection with a connected client's id close the old one: only the same identity from the same address may. */
  private takeover(client: Client, identity: Identity, peer: Peer): LoginRefusal | undefined {
    const current = this.options.connectedClient(client.id);
    if (!current || current === client || current.closed) return undefined;
    const held = this.sessions.get(current);
    if (held?.identity?.name === identity.name && held.peer.address === peer.address) return undefined;
    return { returnCode: CONNACK.identifierRejected, reason: `client id ${client.id} is in use by ${held?.identity?.name ?? 'another client'} from ${held?.peer.address ?? 'elsewhere'}` };
  }

  /** Why `client` may not publish this, or undefined. `client` is null for a will aedes publishes after its client is gone. */
  publishRefusal(client: Client | null, packet: { topic: string; retain: boolean; payload: string | Buffer }): string | undefined {
    const session = client ? this.sessions.get(client) : undefined;
    const reason = this.publishRule(client !== null, session, packet);
    if (reason) this.refused({ client, session }, 'mqtt publish refused', reason, { topic: packet.topic.slice(0, LOGGED_CHARS), retain: packet.retain || undefined });
    return reason;
  }

  private publishRule(connected: boolean, session: Session | undefined, { topic, retain, payload }: { topic: string; retain: boolean; payload: string | Buffer }): string | undefined {
    if (topic.startsWith('$SYS/')) return '$SYS/ topics are the broker’s own';
    if (isAgentAnswer(topic)) return 'only the agent publishes on the topics it answers on';
    if (retain && topic.startsWith('$hw/')) return 'no retained messages under $hw/';
    if (connected && !session?.identity) return 'not logged in';
    const identity = session?.identity;
    if (identity?.rights && !identity.rights.mayPublish(topic)) return `${identity.name} may not publish on this topic`;
    if (retain && !this.retained.admit(topic, Buffer.byteLength(payload))) {
      return `the retained messages would exceed mqtt.maxRetainedMessages (${this.config.maxRetainedMessages}) or mqtt.maxRetainedBytes (${this.config.maxRetainedBytes})`;
    }
    return undefined;
  }

  /** Why `client` may not subscribe to `filter` (SUBACK 0x80), or undefined, counting it against maxSubscriptionsPerClient. */
  subscribeRefusal(client: Client, filter: string): string | undefined {
    const session = this.sessions.get(client);
    const reason = this.subscribeRule(session, filter);
    if (reason) this.refused({ client, session }, 'mqtt subscription refused', reason, { filter: filter.slice(0, LOGGED_CHARS) });
    else session!.subscriptions.add(filter);
    return reason;
  }

  private subscribeRule(session: Session | undefined, filter: string): string | undefined {
    const identity = session?.identity;
    if (!session || !identity) return 'not logged in';
    if (identity.rights && !identity.rights.maySubscribe(filter)) return `${identity.name} may read nothing this filter matches`;
    const { maxSubscriptionsPerClient } = this.config;
    if (!identity.agent && !session.subscriptions.has(filter) && session.subscriptions.size >= maxSubscriptionsPerClient) {
      return `more than mqtt.maxSubscriptionsPerClient (${maxSubscriptionsPerClient}) subscriptions`;
    }
    return undefined;
  }

  unsubscribed(client: Client, filters: string[]): void {
    const subscriptions = this.sessions.get(client)?.subscriptions;
    for (const filter of filters) subscriptions?.delete(filter);
  }

  /** Whether a message on `topic` may reach `client` (a restricted user's wildcard subscription sees only what it may read). */
  mayDeliver(client: Client, topic: string): boolean {
    const identity = this.sessions.get(client)?.identity;
    if (!identity) return false;
    return !identity.rights || identity.rights.mayReceive(topic);
  }

  /** A TLS handshake the listener refused (no client certificate where one is required, an unknown CA, no TLS at all). */
  handshakeRefused(address: string | undefined, reason: string): void {
    this.refused({ peer: { address: address ?? 'unknown' } }, 'mqtt TLS handshake refused', reason);
  }

  /** A message not kept for a persistent session whose client is away, over the queue budget (offline-queues.ts). */
  notQueued(clientId: string, reason: string): void {
    this.refusals.refused({ client: clientId.slice(0, LOGGED_CHARS), reason }, 'mqtt message not kept for a persistent session');
  }

  private refused(who: { client?: Client | null; session?: Session; peer?: Peer }, message: string, reason: string, fields: Record<string, unknown> = {}): void {
    const peer = who.peer ?? who.session?.peer;
    this.refusals.refused({ client: who.client?.id.slice(0, LOGGED_CHARS), identity: who.session?.identity?.name, address: peer?.address, reason, ...fields }, message);
  }
}
