/**
 * The channel between two agents that move workloads: HTTPS with client certificates, where each
 * side knows the other only by the SHA-256 fingerprint of its self-signed certificate (no CA, no
 * shared secret). It carries JSON requests and streamed downloads (artifacts), served by the one
 * HTTP layer with the peer as the routes' context, and, for a server given a stream handler, raw
 * byte streams through an HTTP Upgrade (a migration's lease; the migration stream itself goes QEMU
 * to QEMU over TLS with these same pinned certificates, migrate-out.ts).
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket, TcpNetConnectOpts } from 'node:net';
import { Transform, type Duplex } from 'node:stream';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { AgentError } from '../errors.js';
import { Router, sendError, type ErrorBody, type Route } from '../http/router.js';
import { listening } from '../listen.js';
import type { Logger } from '../log.js';
import { localAddressOf, PathError, systemPaths, type PathPlacer } from '../wifi/paths.js';
import { withTimeout } from '../timeout.js';
import type { WorkloadsConfig } from './config.js';
import { fingerprintOf, type PeerIdentity } from './identity.js';
import { HandshakeLimiter, PeerRefusalLog } from './peer-limits.js';

export interface PeerConfig {
  name: string;
  /** `https://host:port` */
  url: string;
  /** Lower-case hex SHA-256 of the peer's certificate. */
  fingerprint: string;
}

export class PeerError extends Error {
  constructor(
    message: string,
    /** The peer's HTTP status when it answered with an error. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The configured peer called `name`, or a 404 naming those there are. */
export function configuredPeer(peers: readonly PeerConfig[], name: string): PeerConfig {
  const peer = peers.find((p) => p.name === name);
  if (!peer) throw new AgentError(404, `no peer ${name} (configured: ${peers.map((p) => p.name).join(', ') || 'none'})`);
  return peer;
}

/** Where the peer endpoint listens, and how much it takes from one address (`workloads.listen`). */
export type PeerListen = WorkloadsConfig['listen'];

/** How a download goes: its progress, how long the peer may stay silent, and what cuts it short. */
export interface DownloadOptions {
  onProgress?: (bytes: number, total?: number) => void;
  /** Bounds each silence of the peer, before the answer and between chunks. */
  idleTimeoutMs?: number;
  /** Aborted, it cuts the download off: the stream fails with the abort's reason. */
  signal?: AbortSignal;
}

/** A route of the peer API: its context is the peer that asks, identified by its certificate. */
export type PeerRoute = Route<PeerConfig>;

/** Takes over a peer's connection after the Upgrade; the socket is the handler's to use and close. */
export type PeerStreamHandler = (request: { peer: PeerConfig; path: string }, socket: Duplex) => void;

/** The `Upgrade` protocol that turns a peer connection into a raw byte stream. */
const STREAM_PROTOCOL = 'edge-agent-stream';
const MAX_JSON_BYTES = 1 << 20;
const REQUEST_TIMEOUT_MS = 30_000;
const DOWNLOAD_IDLE_TIMEOUT_MS = 30_000;
const STREAM_OPEN_TIMEOUT_MS = 10_000;
/** How long a client may take to complete the TLS handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export class PeerServer {
  private readonly server: Server;
  private readonly router: Router<PeerConfig>;
  /** Every connection, upgraded ones included (the HTTP server forgets those), for `stop`. */
  private readonly connections = new Set<Socket>();
  private readonly handshakes: HandshakeLimiter;
  private readonly refusals: PeerRefusalLog;

  constructor(
    private readonly options: {
      identity: PeerIdentity;
      peers: readonly PeerConfig[];
      listen: PeerListen;
      log: Logger;
      routes: readonly PeerRoute[];
      /** Takes raw streams; without one, an Upgrade is answered 404. */
      stream?: PeerStreamHandler;
    },
  ) {
    this.router = new Router(options.routes, { maxBodyBytes: MAX_JSON_BYTES, log: options.log });
    this.handshakes = new HandshakeLimiter(options.listen.handshakes);
    this.refusals = new PeerRefusalLog(options.log, options.listen.refusalLogIntervalMs);
    // Peers' certificates are self-signed, so OpenSSL cannot verify them: each request is checked against the pins instead.
    this.server = createServer(
      { cert: options.identity.certPem, key: options.identity.keyPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', handshakeTimeout: HANDSHAKE_TIMEOUT_MS },
      (req, res) => {
        const peer = this.identify(req.socket as TLSSocket, `${req.method} ${req.url}`);
        if (typeof peer === 'string') return sendError(res, 403, peer);
        this.router.serve(req, res, peer).catch((error: Error) => {
          options.log.error({ peer: peer.name, method: req.method, path: req.url, error: error.message }, 'answering a peer failed');
          res.destroy();
        });
      },
    );
    // Ahead of the TLS layer's own listener: a connection over its address's limit is cut before the handshake costs anything.
    this.server.prependListener('connection', (socket: Socket) => {
      const address = socket.remoteAddress ?? 'unknown';
      if (!this.handshakes.admit(address)) {
        this.refusals.refused(address, 'too many TLS handshakes from this address');
        socket.destroy();
        return;
      }
      this.connections.add(socket);
      socket.on('close', () => this.connections.delete(socket));
    });
    this.server.on('secureConnection', (socket: TLSSocket) => socket.setNoDelay(true));
    this.server.on('upgrade', (req: IncomingMessage, socket: TLSSocket, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('tlsClientError', (error, socket) => {
      // A connection cut before its handshake has no address left; those cut above were counted there.
      if (socket.remoteAddress) this.refusals.refused(socket.remoteAddress, `TLS handshake failed: ${error.message}`);
    });
    this.server.on('error', (error) => options.log.error({ error: error.message }, 'peer server failed'));
  }

  start(): Promise<void> {
    const { host, port } = this.options.listen;
    return listening(this.server, (done) => this.server.listen(port, host, done)).catch((error: Error) => {
      throw new PeerError(`cannot listen for peers on ${host}:${port}: ${error.message}`);
    });
  }

  /** The port bound (`port` 0: an ephemeral one), once started. */
  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? this.options.listen.port;
  }

  /** Stops listening and cuts every connection, transfers and streams included. */
  async stop(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
  }

  private onUpgrade(req: IncomingMessage, socket: TLSSocket, head: Buffer): void {
    const path = req.url ?? '/';
    const refuse = (status: number, reason: string, message: string) => {
      const body = JSON.stringify({ code: status, reason: message } satisfies ErrorBody);
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    if (req.headers.upgrade?.toLowerCase() !== STREAM_PROTOCOL) {
      return refuse(400, 'Bad Request', `only Upgrade: ${STREAM_PROTOCOL} is served, not ${req.headers.upgrade}`);
    }
    const peer = this.identify(socket, `stream ${path}`);
    if (typeof peer === 'string') return refuse(403, 'Forbidden', peer);
    const handler = this.options.stream;
    if (!handler) return refuse(404, 'Not Found', `no raw streams are served here (${path})`);
    // The HTTP server no longer listens for errors on an upgraded socket; an unhandled one would end the process.
    socket.on('error', (error) => this.options.log.debug({ peer: peer.name, path, error: error.message }, 'peer stream failed'));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${STREAM_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    try {
      handler({ peer, path }, socket);
    } catch (error) {
      this.options.log.error({ peer: peer.name, path, error: (error as Error).message }, 'peer stream handler failed');
      socket.destroy();
    }
  }

  /** The configured peer whose certificate the client presented, or why it is refused. */
  private identify(socket: TLSSocket, what: string): PeerConfig | string {
    const certificate = socket.getPeerCertificate();
    const fingerprint = certificate.raw ? fingerprintOf(certificate.raw) : undefined;
    const peer = this.options.peers.find((p) => p.fingerprint === fingerprint);
    if (peer) return peer;
    const refusal = fingerprint
      ? `certificate ${fingerprint} is not one of this agent's peers`
      : 'a client certificate is required: only configured peers are served';
    this.refusals.refused(socket.remoteAddress ?? 'unknown', refusal, { fingerprint, request: what });
    return refusal;
  }
}

export class PeerClient {
  constructor(
    private readonly identity: PeerIdentity,
    private readonly log: Logger,
    /** Where connections to peers leave from: a trusted WiFi identity's address (wifi.sensitive), or the system's choice. */
    private readonly paths: PathPlacer = systemPaths,
  ) {}

  /** The address to connect from; while there is no path, waits up to `timeoutMs` for one. */
  private async source(peer: PeerConfig, timeoutMs: number): Promise<string | undefined> {
    try {
      return localAddressOf(await this.paths.whenPlaced('peers', timeoutMs), 'peers');
    } catch (error) {
      throw error instanceof PathError ? new PeerError(`cannot reach peer ${peer.name}: ${error.message}`) : error;
    }
  }

  /** JSON to and from `peer`, everything within `timeoutMs`; the caller validates the answer, which is typed but not checked. */
  async request<T>(peer: PeerConfig, method: string, path: string, body?: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {};
    const { socket, answer } = this.open(peer, method, path, headers, payload, await this.source(peer, timeoutMs));
    const exchange = async () => {
      const response = await answer;
      if (!('response' in response)) throw new PeerError(`peer ${peer.name} switched protocols on ${method} ${path}`);
      const text = (await readBody(response.response, MAX_JSON_BYTES)).toString('utf8');
      const status = response.response.statusCode ?? 0;
      if (status < 200 || status > 299) throw refusal(peer, `${method} ${path}`, status, text);
      try {
        return (text === '' ? undefined : JSON.parse(text)) as T;
      } catch (error) {
        throw new PeerError(`peer ${peer.name} answered ${method} ${path} with invalid JSON: ${(error as Error).message}`);
      }
    };
    try {
      return await withTimeout(exchange(), timeoutMs, timedOutError(peer, `${method} ${path}`, timeoutMs));
    } catch (error) {
      throw error instanceof PeerError ? error : new PeerError(`${method} ${path} to peer ${peer.name}: ${(error as Error).message}`);
    } finally {
      socket.destroy();
    }
  }

  /**
   * The body of GET `path`, streamed. A silence of the peer longer than `idleTimeoutMs`, before the
   * answer or between chunks, or an abort of `signal` fails the stream with a PeerError; read it promptly.
   */
  async download(peer: PeerConfig, path: string, { onProgress, idleTimeoutMs = DOWNLOAD_IDLE_TIMEOUT_MS, signal }: DownloadOptions = {}): Promise<NodeJS.ReadableStream> {
    signal?.throwIfAborted();
    const { socket, answer } = this.open(peer, 'GET', path, {}, undefined, await this.source(peer, idleTimeoutMs));
    let cause: Error | undefined;
    socket.on('error', (error) => (cause ??= error));
    socket.setTimeout(idleTimeoutMs, () => socket.destroy(new PeerError(`peer ${peer.name} at ${peer.url} sent nothing for ${idleTimeoutMs} ms`)));
    const cut = () => socket.destroy(signal!.reason as Error);
    signal?.addEventListener('abort', cut, { once: true });
    socket.once('close', () => signal?.removeEventListener('abort', cut));
    const opened = await answer;
    if (!('response' in opened)) {
      socket.destroy();
      throw new PeerError(`peer ${peer.name} switched protocols on GET ${path}`);
    }
    const { response } = opened;
    const status = response.statusCode ?? 0;
    if (status < 200 || status > 299) {
      const text = await readBody(response, MAX_JSON_BYTES).finally(() => socket.destroy());
      throw refusal(peer, `GET ${path}`, status, text.toString('utf8'));
    }
    const length = response.headers['content-length'];
    const total = length === undefined ? undefined : Number(length);
    let received = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        try {
          onProgress?.(received, total);
          done(null, chunk);
        } catch (error) {
          done(error as Error);
        }
      },
    });
    response.on('error', (error) => {
      const reason = cause?.message ?? (error.message === 'aborted' ? 'the connection closed' : error.message);
      counted.destroy(new PeerError(`download of ${path} from peer ${peer.name} broke off after ${received} of ${total ?? 'unknown'} bytes: ${reason}`));
    });
    counted.on('close', () => socket.destroy());
    return response.pipe(counted);
  }

  /**
   * A raw byte stream to the peer's stream handler for `path` over the pinned connection, open
   * within `timeoutMs`. From then on it is the caller's: no timeout, the caller ends or destroys it.
   */
  async stream(peer: PeerConfig, path: string, timeoutMs = STREAM_OPEN_TIMEOUT_MS): Promise<Duplex> {
    const { socket, answer } = this.open(peer, 'GET', path, { Connection: 'Upgrade', Upgrade: STREAM_PROTOCOL }, undefined, await this.source(peer, timeoutMs));
    const opened = await withTimeout(answer, timeoutMs, timedOutError(peer, `opening stream ${path}`, timeoutMs), () => socket.destroy());
    if ('response' in opened) {
      const text = await withTimeout(readBody(opened.response, MAX_JSON_BYTES), timeoutMs, timedOutError(peer, `opening stream ${path}`, timeoutMs)).finally(() => socket.destroy());
      throw refusal(peer, `stream ${path}`, opened.response.statusCode ?? 0, text.toString('utf8'));
    }
    if (opened.head.length > 0) socket.unshift(opened.head);
    return socket;
  }

  /**
   * A connection to `peer` that sends the request only once the peer presented the pinned
   * certificate: OpenSSL cannot vouch for a self-signed one, and `checkServerIdentity` is skipped
   * when it could not, so the pin is checked here.
   */
  private open(peer: PeerConfig, method: string, path: string, headers: OutgoingHttpHeaders, body: Buffer | undefined, localAddress: string | undefined): { socket: TLSSocket; answer: Promise<Answer> } {
    let target: URL;
    try {
      target = new URL(peer.url);
    } catch {
      throw new PeerError(`peer ${peer.name} has an invalid URL: ${peer.url}`);
    }
    const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(target.port || 443);
    // tls.connect hands these to net's connect, which binds `localAddress`; its types leave that out.
    const options: ConnectionOptions & Pick<TcpNetConnectOpts, 'localAddress'> = { host, port, localAddress, cert: this.identity.certPem, key: this.identity.keyPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' };
    const socket = connect(options);
    socket.setNoDelay(true);
    const answer = new Promise<Answer>((resolve, reject) => {
      const fail = (error: Error) => {
        reject(error instanceof PeerError ? error : new PeerError(`peer ${peer.name} at ${peer.url}: ${error.message}`));
        socket.destroy();
      };
      socket.on('error', (error) => {
        this.log.debug({ peer: peer.name, error: error.message }, 'peer connection failed');
        fail(error);
      });
      const closedEarly = () => new PeerError(`peer ${peer.name} at ${peer.url} closed the connection before answering ${method} ${path}`);
      socket.on('close', () => fail(closedEarly()));
      socket.once('secureConnect', () => {
        const certificate = socket.getPeerCertificate();
        const presented = certificate.raw ? fingerprintOf(certificate.raw) : 'none';
        if (presented !== peer.fingerprint) {
          this.log.warn({ peer: peer.name, url: peer.url, presented, pinned: peer.fingerprint }, 'peer presented an unexpected certificate');
          return fail(new PeerError(`peer ${peer.name} presented certificate ${presented}, expected ${peer.fingerprint}`));
        }
        const req = httpRequest({ host, port, method, path, headers, createConnection: () => socket });
        // Node calls a close before the answer "socket hang up".
        req.on('error', (error: NodeJS.ErrnoException) => fail(error.code === 'ECONNRESET' ? closedEarly() : error));
        req.on('response', (response) => resolve({ response }));
        req.on('upgrade', (_response, _socket, head: Buffer) => resolve({ head }));
        req.end(body);
      });
    });
    return { socket, answer };
  }
}

/** What the peer answered: an HTTP response, or the switch to a raw stream with the bytes already read past the 101. */
type Answer = { response: IncomingMessage } | { head: Buffer };

/** A peer's whole answer; past `limit` bytes an error, the rest read and dropped. */
function readBody(stream: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else reject(new Error(`the answer is larger than ${limit} bytes`));
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** A PeerError with the status and the peer's own message (the `reason` of its error body) or answer. */
function refusal(peer: PeerConfig, what: string, status: number, text: string): PeerError {
  let message = text.trim();
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && 'reason' in parsed && typeof parsed.reason === 'string') message = parsed.reason;
  } catch {
    // Not JSON: the text is the message.
  }
  return new PeerError(`peer ${peer.name} answered ${status} to ${what}: ${message || '(no message)'}`, status);
}

const timedOutError = (peer: PeerConfig, what: string, ms: number) => () => new PeerError(`${what} at peer ${peer.name} (${peer.url}) timed out after ${ms} ms`);
