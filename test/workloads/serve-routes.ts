/** A module's local routes behind the one router on a loopback port, as the API module serves them (its token check aside). */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Router, type Route } from '../../src/http/router.js';
import type { Logger } from '../../src/log.js';

export interface ServedRoutes {
  /** `method path` with `body` as JSON; the status and the JSON answer. */
  call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

export async function serveRoutes(routes: readonly Route[], log: Logger): Promise<ServedRoutes> {
  const router = new Router(routes, { maxBodyBytes: 64 * 1024, log });
  const server = createServer((req, res) => void router.serve(req, res, undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    async call<T>(method: string, path: string, body?: unknown) {
      const response = await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as T };
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
