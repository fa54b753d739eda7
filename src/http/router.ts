/**
 * The one HTTP layer: modules contribute routes, a find-my-way router picks one, bodies are read
 * and parsed by one reader, and every error answers `{code, reason}` with the status it carries.
 * The local API and the peer API both serve through it; a route's context says who is asking.
 */
import FindMyWay from 'find-my-way';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import type * as v from 'valibot';
import { AgentError } from '../errors.js';
import type { Logger } from '../log.js';
import { readJsonBody, parseBody } from './body.js';

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

export interface RouteRequest<Context> {
  /** Path parameters (`:name`), URI-decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** The JSON body parsed by `schema`: 413 past the size limit, 400 for invalid JSON or a schema issue. */
  body<S extends v.GenericSchema>(schema: S): Promise<v.InferOutput<S>>;
  /** Who is asking: nothing on the local API, the peer on the peer API. */
  context: Context;
}

export interface Route<Context = undefined> {
  method: Method;
  /** find-my-way pattern: `/api/v1/devices/:namespace/:name`. */
  path: string;
  /** The answer, sent as JSON with 200; a `Streamed` is sent as bytes. */
  handle(request: RouteRequest<Context>): unknown;
}

/** An answer sent as a byte stream (a file, a text exposition) instead of JSON. */
export class Streamed {
  constructor(
    readonly stream: NodeJS.ReadableStream,
    /** Its length, when known: the receiver's progress then has a total. */
    readonly size?: number,
    /** What the bytes are: a reader that checks (a Prometheus scraper) needs the exact type. */
    readonly type = 'application/octet-stream',
  ) {}
}

/** The error body everywhere. */
export interface ErrorBody {
  code: number;
  reason: string;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, reason: string): void {
  sendJson(res, status, { code: status, reason } satisfies ErrorBody);
}

/** The request's target, parsed the same way wherever a request is looked at; 400 for one that is no URL (`GET //`). */
export function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    throw new AgentError(400, 'the request target is not a valid path');
  }
}

export class Router<Context = undefined> {
  private readonly table = FindMyWay();

  constructor(
    routes: readonly Route<Context>[],
    private readonly options: { maxBodyBytes: number; log: Logger },
  ) {
    for (const route of routes) this.table.on(route.method, route.path, () => undefined, route);
  }

  /** Answers `req`: the route's result, or the error it threw as `{code, reason}`. */
  async serve(req: IncomingMessage, res: ServerResponse, context: Context): Promise<void> {
    const method = (req.method ?? 'GET') as Method;
    try {
      const url = requestUrl(req);
      const found = this.table.find(method, url.pathname);
      if (!found) throw new AgentError(404, `no route for ${method} ${url.pathname}`);
      const route = found.store as Route<Context>;
      const answer = await route.handle({
        params: found.params as Record<string, string>,
        query: url.searchParams,
        body: async (schema) => parseBody(schema, await readJsonBody(req, this.options.maxBodyBytes)),
        context,
      });
      if (!(answer instanceof Streamed)) return sendJson(res, 200, answer);
      res.writeHead(200, { 'Content-Type': answer.type, ...(answer.size === undefined ? {} : { 'Content-Length': answer.size }) });
      pipeline(answer.stream, res, (error) => {
        if (error) this.options.log.warn({ path: url.pathname, err: error.message }, 'sending a stream broke off');
      });
    } catch (error) {
      if (error instanceof AgentError) return sendError(res, error.status, error.message);
      this.options.log.error({ err: error, method, path: req.url }, 'request failed');
      sendError(res, 500, (error as Error).message);
    }
  }
}
