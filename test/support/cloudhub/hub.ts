/**
 * CloudHub's websocket side: accepts an edge whose upgrade carries `ConnectionUse: msg`, a
 * `node_id`, and a client certificate for `system:node:<node_id>`; reads one beehive message per
 * text frame and answers as CloudCore's controllers do. One session per node: a new connection
 * replaces the old one. A downstream message that needs an acknowledgement is sent again every
 * `resendMs` until the edge acknowledges it, forever, and again on every new connection
 * (session/node_session.go sendMessageWithRetry, 5 s, requeued after 4 tries).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { MessageError, parseMessage, type BeehiveMessage } from '../../../src/cloud/message.js';
import { answerUpstream, type ControllerState, type RegisteredNode } from './controllers.js';

interface Waiter {
  predicate: (message: BeehiveMessage) => boolean;
  resolve: (message: BeehiveMessage) => void;
}

const describe = (message: BeehiveMessage) => `${message.route.operation} ${message.route.resource}`;

/** message_dispatcher.go noAckRequired, the cases the test hub sends: these go once, unacknowledged. */
function needsAck(message: BeehiveMessage): boolean {
  const { resource, operation } = message.route;
  return !(resource.includes('membership') || resource.includes('twin/cloud_updated') || resource.includes('podlist') || message.route.group === 'user' || operation === 'response');
}

const DEVICE = /^([^/]+)\/device\/([^/]+)$/;

export class Hub implements ControllerState {
  /** Every upstream message, in order (keepalives included). */
  readonly received: BeehiveMessage[] = [];
  /** Protocol errors seen: bad frames, refused upgrades, TLS failures, unusable contents. */
  readonly errors: string[] = [];
  readonly nodes = new Map<string, RegisteredNode>();
  /** msg_ids of downstream messages the edge acknowledged. */
  readonly acked = new Set<string>();
  /** node_id, project_id, ConnectionUse and path of each upgrade request, refused ones included. */
  readonly handshakes: Array<Record<string, string>> = [];
  /** Whether `received` keeps every message (a long replay counts them through `onMessage` instead). */
  keepMessages = true;
  /** Called with every upstream message and the size of its frame. */
  onMessage?: (message: BeehiveMessage, bytes: number) => void;
  /** Whether twin reports and state updates get devicecontroller's "OK". */
  answerTwin = true;
  /** Devices devicecontroller knows: those sent down with hub.send and not deleted. */
  readonly devices = new Set<string>();
  /** Whether devicecontroller's DeviceStatus patches fail: reports then go unanswered. */
  failPatches = false;
  /** How often an unacknowledged downstream message is sent again (CloudHub's sendRetryInterval: 5 s). */
  resendMs = 5000;
  /** How many times each downstream message was written to an edge, by msg_id. */
  readonly deliveries = new Map<string, number>();
  /** Downstream messages awaiting the edge's acknowledgement, by msg_id. */
  private readonly unacked = new Map<string, { frame: string; timer: NodeJS.Timeout }>();
  resourceVersion = 1000;
  private readonly sessions = new Map<string, WebSocket>();
  private readonly waiters = new Set<Waiter>();
  private readonly websockets = new WebSocketServer({ noServer: true });

  /** Currently open edge connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /** A downstream message, as a controller sends it: kept and sent again until acknowledged when CloudHub would. */
  send(message: BeehiveMessage): void {
    const device = message.route.group === 'resource' ? DEVICE.exec(message.route.resource) : null;
    if (device) {
      const id = `${device[1]}/${device[2]}`;
      if (message.route.operation === 'delete') this.devices.delete(id);
      else this.devices.add(id);
    }
    const frame = JSON.stringify(message);
    const id = message.header.msg_id;
    if (needsAck(message)) {
      const timer = setInterval(() => {
        if (this.sessions.size > 0) this.deliver(id, frame);
      }, this.resendMs);
      timer.unref();
      this.unacked.set(id, { frame, timer });
    }
    this.deliver(id, frame);
  }

  /** Downstream messages the edge has not acknowledged yet. */
  get unacknowledged(): number {
    return this.unacked.size;
  }

  private deliver(id: string, frame: string): void {
    this.sendRaw(frame);
    this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
  }

  /** Any text frame, to every connected edge. */
  sendRaw(frame: string): void {
    if (this.sessions.size === 0) throw new Error('no edge is connected');
    for (const socket of this.sessions.values()) socket.send(frame);
  }

  /** The first received message (past or future) matching `predicate`. */
  waitFor(predicate: (message: BeehiveMessage) => boolean, timeoutMs = 5000): Promise<BeehiveMessage> {
    const seen = this.received.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (message) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(message);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const lately = this.received.slice(-10).map(describe).join('; ') || 'nothing';
        reject(new Error(`no matching message within ${timeoutMs} ms; last received: ${lately}; errors: ${this.errors.join('; ') || 'none'}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Closes the edges' websockets abruptly, without a close frame. */
  dropConnections(): void {
    for (const socket of this.sessions.values()) socket.terminate();
    this.sessions.clear();
  }

  /** The 'upgrade' listener for the mutual-TLS server. */
  readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const header = (name: string) => {
      const value = req.headers[name.toLowerCase()];
      return typeof value === 'string' ? value : undefined;
    };
    const handshake: Record<string, string> = { path: req.url ?? '' };
    for (const name of ['node_id', 'project_id', 'ConnectionUse']) {
      const value = header(name);
      if (value !== undefined) handshake[name] = value;
    }
    this.handshakes.push(handshake);
    const node = handshake.node_id;
    const commonName = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
    const refusal = this.refusal(node, handshake.ConnectionUse, String(commonName));
    if (refusal || !node) {
      this.errors.push(`refused upgrade: ${refusal}`);
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${refusal}`);
      return;
    }
    this.websockets.handleUpgrade(req, socket, head, (websocket) => this.open(node, websocket));
  };

  private refusal(node: string | undefined, use: string | undefined, commonName: string): string | undefined {
    if (use !== 'msg') return `ConnectionUse is ${use === undefined ? 'missing' : `"${use}"`}, not "msg"`;
    if (!node) return 'node_id header missing';
    if (commonName !== `system:node:${node}`) return `client certificate CN ${commonName} is not system:node:${node}`;
    return undefined;
  }

  private open(node: string, websocket: WebSocket): void {
    this.sessions.get(node)?.terminate();
    this.sessions.set(node, websocket);
    // A new session starts with what the node has not acknowledged yet.
    for (const [id, { frame }] of this.unacked) this.deliver(id, frame);
    websocket.on('close', () => {
      if (this.sessions.get(node) === websocket) this.sessions.delete(node);
    });
    websocket.on('error', (error) => this.errors.push(`websocket of ${node}: ${error.message}`));
    websocket.on('message', (data: RawData) => this.receive(node, websocket, (data as Buffer).toString('utf8')));
  }

  private receive(node: string, websocket: WebSocket, frame: string): void {
    try {
      const message = parseMessage(frame);
      if (this.keepMessages) this.received.push(message);
      this.onMessage?.(message, Buffer.byteLength(frame));
      for (const waiter of this.waiters) if (waiter.predicate(message)) waiter.resolve(message);
      const answer = answerUpstream(this, message);
      if (answer) websocket.send(JSON.stringify(answer));
      const acknowledged = message.route.operation === 'response' ? message.header.parent_msg_id : undefined;
      if (acknowledged && this.unacked.has(acknowledged)) {
        clearInterval(this.unacked.get(acknowledged)!.timer);
        this.unacked.delete(acknowledged);
      }
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      this.errors.push(`bad frame from ${node}: ${error.message}`);
    }
  }
}
