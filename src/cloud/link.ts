/**
 * The WebSocket to CloudHub as EdgeHub keeps it: mutual TLS with the edge certificate, the
 * `node_id`/`project_id`/`ConnectionUse` headers, a keepalive every heartbeat, and a reconnect
 * with exponential backoff and jitter whenever it drops. The certificate is obtained on the first
 * connect and rotated before it expires, after which the link reconnects with the new one.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { Logger } from '../log.js';
import { cloudDir } from '../paths.js';
import { atWallClock } from '../timeout.js';
import type { Remove } from '../module.js';
import { localAddressOf, type PathPlacer, type Placement } from '../wifi/paths.js';
import { ensureCredentials, rotateCredentials, rotationDelayMs, type CertOptions, type CloudCredentials } from './certs.js';
import type { CloudConfig } from './config.js';
import { handshakeHeaders, keepalive, MessageError, parseMessage, type BeehiveMessage } from './message.js';

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const ROTATION_RETRY_MS = 60_000;

interface LinkEvents {
  connected: [];
  disconnected: [reason: string];
  message: [BeehiveMessage];
}

export interface LinkStatus {
  connected: boolean;
  url: string;
  since?: string;
  lastError?: string;
  connects: number;
  certificateExpires?: string;
  badMessages: number;
  /** Where the link leaves from (wifi.sensitive), or why it waits. */
  path: Placement;
  /** The local address of the open connection. */
  source?: string;
}

/** ±20 %: a fleet that lost its cloud together must not come back in one wave. */
function jittered(ms: number): number {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

export class CloudLink extends EventEmitter<LinkEvents> {
  private socket?: WebSocket;
  private credentials?: CloudCredentials;
  private retryMs = FIRST_RETRY_MS;
  private stopped = false;
  private readonly timers = new Map<'retry' | 'keepalive', NodeJS.Timeout>();
  private cancelRotation?: () => void;
  private readonly status: LinkStatus;
  private readonly certOptions: CertOptions;
  /** The address the open or opening connection is bound to (undefined: the system's choice). */
  private boundTo: string | undefined;
  private connecting = false;
  /** The path changed while a connection was being opened: look again once it is. */
  private repath = false;
  /** The connection is being closed to reconnect from another path, not because it failed. */
  private moving = false;
  private removePathListener: Remove | undefined;

  constructor(
    private readonly config: CloudConfig,
    private readonly node: string,
    dataDir: string,
    private readonly paths: PathPlacer,
    private readonly log: Logger,
  ) {
    super();
    this.status = { connected: false, url: `wss://${config.server}:${config.websocketPort}/${config.projectId}/${node}/events`, connects: 0, badMessages: 0, path: paths.place('cloud') };
    this.certOptions = { server: config.server!, httpsPort: config.httpsPort, node, token: config.token, dir: cloudDir(dataDir), log };
  }

  start(): void {
    this.removePathListener = this.paths.onChange(() => this.pathChanged());
    void this.connect();
  }

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Bytes accepted by send() and not yet written to the socket. */
  get buffered(): number {
    return this.socket?.bufferedAmount ?? 0;
  }

  state(): LinkStatus {
    return { ...this.status, connected: this.connected };
  }

  /** False when there is no connection: the caller keeps the message for the next one. */
  send(message: BeehiveMessage | string): boolean {
    if (!this.connected) return false;
    this.socket!.send(typeof message === 'string' ? message : JSON.stringify(message));
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.removePathListener?.();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.cancelRotation?.();
    const socket = this.socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.close(1000, 'edge stopping');
    const force = setTimeout(() => socket.terminate(), 2000);
    await closed;
    clearTimeout(force);
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting) return;
    const path = this.paths.place('cloud');
    this.status.path = path;
    if (path.via === 'none') {
      // No retry timer: the next change of paths connects.
      this.status.lastError = `waiting for a path: ${path.reason}`;
      this.log.warn({ reason: path.reason }, 'cloud link waits for a trusted WiFi identity');
      return;
    }
    this.connecting = true;
    this.boundTo = localAddressOf(path, 'cloud');
    try {
      this.credentials ??= await ensureCredentials({ ...this.certOptions, localAddress: this.boundTo });
      this.scheduleRotation();
      await this.open(this.credentials);
    } catch (error) {
      this.fail((error as Error).message);
    } finally {
      this.connecting = false;
    }
    if (this.repath) {
      this.repath = false;
      this.pathChanged();
    }
  }

  /** Whether the open connection leaves from where the cloud's traffic should now. */
  private onPath(): boolean {
    const path = this.paths.place('cloud');
    return path.via !== 'none' && localAddressOf(path, 'cloud') === this.boundTo;
  }

  /**
   * The trusted identity in use lost its AP or address, or another one took its place: the
   * connection moves (the queued reports stay in the outbox and go out on the new one). A link
   * waiting for a path, or backing off, tries the new one at once.
   */
  private pathChanged(): void {
    if (this.stopped) return;
    this.status.path = this.paths.place('cloud');
    if (this.connecting) {
      this.repath = true;
      return;
    }
    if (this.socket) {
      if (this.onPath()) return;
      this.log.info({ from: this.boundTo, path: this.status.path }, 'cloud link moves to another path');
      this.moving = true;
      this.socket.terminate();
      return;
    }
    this.retryMs = FIRST_RETRY_MS;
    clearTimeout(this.timers.get('retry'));
    void this.connect();
  }

  private open(credentials: CloudCredentials): Promise<void> {
    const socket = new WebSocket(this.status.url, {
      localAddress: this.boundTo,
      headers: handshakeHeaders(this.node, this.config.projectId),
      ca: credentials.caPem,
      cert: credentials.certPem,
      key: credentials.keyPem,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      perMessageDeflate: false,
    });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      let opened = false;
      // Errors after the first one (a refused upgrade is followed by its socket's error) only update the status.
      socket.on('error', (error) => {
        this.status.lastError = error.message;
        if (!opened) reject(new Error(`cannot reach CloudHub at ${this.status.url}: ${error.message}`));
      });
      socket.once('unexpected-response', (_request, response) => {
        reject(new Error(`CloudHub refused the connection: HTTP ${response.statusCode} ${response.statusMessage ?? ''}`.trim()));
        socket.terminate();
      });
      // Where the connection really left from, for `edge-agent cloud` and the tests.
      socket.once('upgrade', (response) => (this.status.source = response.socket.localAddress));
      socket.once('open', () => {
        opened = true;
        this.opened(socket);
        resolve();
      });
    });
  }

  private opened(socket: WebSocket): void {
    this.retryMs = FIRST_RETRY_MS;
    this.status.connects++;
    this.status.since = new Date().toISOString();
    this.status.lastError = undefined;
    this.log.info({ url: this.status.url, connects: this.status.connects, from: this.boundTo }, 'connected to the cloud');
    let alive = true;
    socket.on('pong', () => (alive = true));
    this.timers.set(
      'keepalive',
      setInterval(() => {
        // A cloud that vanished without closing the TCP connection answers no ping: give up on it.
        if (!alive) return socket.terminate();
        alive = false;
        socket.ping();
        this.send(keepalive());
      }, this.config.heartbeatMs),
    );
    socket.on('message', (data, isBinary) => this.receive(isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString()));
    socket.once('close', (code, reason) => {
      clearInterval(this.timers.get('keepalive'));
      this.timers.delete('keepalive');
      if (this.socket === socket) this.socket = undefined;
      this.status.source = undefined;
      const why = `connection closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`;
      this.emit('disconnected', why);
      if (!this.moving) return this.fail(this.status.lastError ?? why);
      this.moving = false;
      void this.connect();
    });
    this.emit('connected');
  }

  private receive(frame: string): void {
    let message: BeehiveMessage;
    try {
      message = parseMessage(frame);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      this.status.badMessages++;
      this.log.warn({ err: error.message, frame: frame.slice(0, 200) }, 'bad message from the cloud ignored');
      return;
    }
    this.emit('message', message);
  }

  private fail(reason: string): void {
    if (this.stopped) return;
    this.status.lastError = reason;
    const delay = jittered(this.retryMs);
    this.log.warn({ err: reason, retryMs: delay }, 'cloud link down');
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    clearTimeout(this.timers.get('retry'));
    this.timers.set('retry', setTimeout(() => void this.connect(), delay));
  }

  private scheduleRotation(delay = rotationDelayMs(this.credentials!)): void {
    if (this.cancelRotation) return;
    this.status.certificateExpires = this.credentials!.notAfter.toISOString();
    // A one-year certificate rotates months from now: longer than one timer waits.
    this.cancelRotation = atWallClock(Date.now() + delay, () => {
      this.cancelRotation = undefined;
      void this.rotate();
    });
  }

  private async rotate(): Promise<void> {
    try {
      this.credentials = await rotateCredentials(this.credentials!, { ...this.certOptions, localAddress: this.boundTo });
      this.log.info({ notAfter: this.credentials.notAfter.toISOString() }, 'edge certificate rotated');
      this.scheduleRotation();
      // The open connection still uses the old certificate: reconnect with the new one, as EdgeHub does.
      this.socket?.close(1000, 'certificate rotated');
    } catch (error) {
      this.log.warn({ err: (error as Error).message, retryMs: ROTATION_RETRY_MS }, 'edge certificate rotation failed');
      this.scheduleRotation(ROTATION_RETRY_MS);
    }
  }
}
