/**
 * CloudHub's websocket side: accepts an edge whose upgrade carries `ConnectionUse: msg`, a
 * `node_id`, and a client certificate for `system:node:<node_id>`; reads one beehive message per
 * text frame and answers as CloudCore's controllers do. One session per node: a new connection
 * replaces the old one.
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
  resourceVersion = 1000;
  private readonly sessions = new Map<string, WebSocket>();
  private readonly waiters = new Set<Waiter>();
  private readonly websockets = new WebSocketServer({ noServer: true });

  /** Currently open edge connections. */
  get connections(): number {
    return this.sessions.size;
  }

  send(message: BeehiveMessage): void {
    this.sendRaw(JSON.stringify(message));
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
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      this.errors.push(`bad frame from ${node}: ${error.message}`);
    }
  }
}
