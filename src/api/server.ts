/**
 * The local HTTP API (127.0.0.1 by default): serves the routes the modules contribute through
 * the one router. It starts last, once every module it answers for is running.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Router, type Route } from '../http/router.js';
import type { Logger } from '../log.js';
import { MODULE, type Module } from '../module.js';

const MAX_BODY_BYTES = 64 * 1024;

export interface ApiOptions {
  host: string;
  port: number;
  routes: readonly Route[];
  log: Logger;
}

export class ApiServer implements Module {
  readonly name = MODULE.api;
  private server?: Server;

  constructor(private readonly options: ApiOptions) {}

  async start(): Promise<void> {
    const { host, port, routes, log } = this.options;
    const router = new Router(routes, { maxBodyBytes: MAX_BODY_BYTES, log });
    const server = createServer((req, res) => void router.serve(req, res, undefined));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** The port bound (`port` 0: an ephemeral one). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? this.options.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
