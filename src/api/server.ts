/**
 * The local API (127.0.0.1 by default, and a unix socket when configured): serves the routes
 * the modules contribute through the one router, each request first passed by the guard
 * (auth.ts). It starts last, once every module it answers for is running.
 */
import { chmod } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentError } from '../errors.js';
import { Router, sendError, type Route } from '../http/router.js';
import { listening, removeLeftSocket } from '../listen.js';
import type { Logger } from '../log.js';
import { MODULE, type Module } from '../module.js';
import { ApiGuard } from './auth.js';
import type { ApiConfig } from './config.js';
import { apiTokenFile, loadOrCreateApiToken } from './token.js';

const MAX_BODY_BYTES = 64 * 1024;
/** A slow or half-sent request (slowloris) holds a connection: its headers must be in within 10 s, all of it (64 KiB at most) within 15 s. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
/**
 * How often Node looks for requests past those limits: its default, 30 s, would let them live that
 * long; every second would wake an idle gateway every second. A late request lives 2 s at most past its limit.
 */
const TIMEOUT_CHECK_MS = 2_000;
/** Beyond this, new connections are dropped: the API has few callers, and file descriptors are shared with the broker and the database. */
const MAX_CONNECTIONS = 256;
/** The agent's user and group may connect to the socket, others not. */
const SOCKET_MODE = 0o660;

export interface ApiOptions {
  config: ApiConfig;
  /** Where the token file is, made at first start. */
  dataDir: string;
  routes: readonly Route[];
  log: Logger;
}

/** A refused request also ends its connection: the body its sender may still be sending is not read. */
function refuse(res: ServerResponse, error: AgentError): void {
  if (error.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
  res.setHeader('Connection', 'close');
  sendError(res, error.status, error.message);
}

export class ApiServer implements Module {
  readonly name = MODULE.api;
  readonly tokenFile: string;
  /** The TCP server, then the unix socket's when configured. */
  private readonly servers: Server[] = [];

  constructor(private readonly options: ApiOptions) {
    this.tokenFile = apiTokenFile(options.dataDir);
  }

  async start(): Promise<void> {
    const { config, routes, log } = this.options;
    const guard = new ApiGuard({ token: loadOrCreateApiToken(this.tokenFile), host: config.host, hosts: config.hosts });
    const router = new Router(routes, { maxBodyBytes: MAX_BODY_BYTES, log });
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      try {
        guard.check(req);
      } catch (error) {
        // The guard throws its refusals only, each an AgentError.
        return refuse(res, error as AgentError);
      }
      void router.serve(req, res, undefined);
    };
    await this.listen(handle, (server, listening) => server.listen(config.port, config.host, listening));
    const socket = config.socket;
    if (socket === undefined) return;
    await removeLeftSocket(socket);
    await this.listen(handle, (server, listening) => server.listen(socket, listening));
    await chmod(socket, SOCKET_MODE);
  }

  /** The TCP port bound (`port` 0: an ephemeral one). */
  get port(): number {
    return (this.servers[0]?.address() as AddressInfo | null)?.port ?? this.options.config.port;
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.servers
        .filter((server) => server.listening)
        .map((server) => {
          server.closeAllConnections();
          // Closing the unix socket's server also removes its file.
          return new Promise<void>((resolve) => server.close(() => resolve()));
        }),
    );
  }

  private listen(handle: (req: IncomingMessage, res: ServerResponse) => void, bind: (server: Server, listening: () => void) => void): Promise<void> {
    const server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_MS }, handle);
    server.maxConnections = MAX_CONNECTIONS;
    this.servers.push(server);
    return listening(server, (done) => bind(server, done));
  }
}
