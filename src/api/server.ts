/**
 * The local HTTP API (127.0.0.1 by default): devices, twins, desired values. A 2xx answer to
 * a write means the change is committed to SQLite.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import * as v from 'valibot';
import type { Logger } from '../log.js';
import { parseWith } from '../schema.js';
import type { Twins } from '../twin/twins.js';
import { TwinError, toMsgTwin, type DeviceRecord, type MsgTwin } from '../twin/types.js';
import type { Wifi } from '../wifi/index.js';

const MAX_BODY_BYTES = 64 * 1024;

const valuesBody = v.record(v.string(), v.pipe(v.union([v.string(), v.number(), v.boolean()], 'must be a string, number or boolean'), v.transform(String)));
const stateBody = v.object({ state: v.pipe(v.string(), v.minLength(1)) });

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ApiOptions {
  host: string;
  port: number;
  twins: Twins;
  wifi: Wifi;
  /** The cloud link's state. */
  cloud: () => unknown;
  /** Routes under /api/v1/workloads, when workloads are enabled: `path` is what follows it. */
  workloads?: (method: string, path: string[], body: () => Promise<unknown>) => Promise<unknown>;
  node: string;
  mqttUrl: string;
  log: Logger;
}

function deviceSummary(device: DeviceRecord) {
  return {
    id: device.id,
    namespace: device.namespace,
    name: device.name,
    description: device.description,
    state: device.state,
    reason: device.stateReason,
    lastOnline: device.lastOnline,
    managed: device.managed,
    properties: device.twin.size,
  };
}

/** A device as `GET /api/v1/devices/{ns}/{name}` shows it: its twin with versions, and the delta. */
export type DeviceDetail = ReturnType<typeof deviceDetail>;

function deviceDetail(twins: Twins, device: DeviceRecord) {
  const twin: Record<string, MsgTwin> = {};
  for (const [key, property] of device.twin) if (property.type !== 'deleted') twin[key] = toMsgTwin(property, true);
  return { ...deviceSummary(device), attributes: device.attributes, twin, delta: twins.delta(device.id)?.delta ?? {} };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
}

function parse<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const parsed = parseWith(schema, value);
  if (parsed.ok) return parsed.value;
  const issue = parsed.issues[0]!;
  throw new HttpError(400, `${issue.path || 'body'}: ${issue.message}`);
}

export class ApiServer {
  private server?: Server;

  constructor(private readonly options: ApiOptions) {}

  async start(): Promise<number> {
    const server = createServer((req, res) => void this.serve(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      send(200, await this.route(req));
    } catch (error) {
      if (error instanceof HttpError) return send(error.status, { code: error.status, reason: error.message });
      if (error instanceof TwinError) return send(error.code, { code: error.code, reason: error.message });
      this.options.log.error({ err: error, url: req.url }, 'api request failed');
      send(500, { code: 500, reason: (error as Error).message });
    }
  }

  private device(namespace: string, name: string): DeviceRecord {
    const device = this.options.twins.get(`${namespace}/${name}`);
    if (!device) throw new HttpError(404, `device ${namespace}/${name} not found`);
    return device;
  }

  private async route(req: IncomingMessage): Promise<unknown> {
    const { twins } = this.options;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const route = `${method} /${parts.slice(0, 2).join('/')}`;

    if (method === 'GET' && url.pathname === '/healthz') return { status: 'ok', node: this.options.node, mqtt: this.options.mqttUrl };
    if (method === 'GET' && url.pathname === '/api/v1/wifi') return this.options.wifi.state();
    if (method === 'GET' && url.pathname === '/api/v1/cloud') return this.options.cloud();
    if (route === `${method} /api/v1` && parts[2] === 'workloads') {
      if (!this.options.workloads) throw new HttpError(404, 'workloads are disabled (workloads.enabled in the config)');
      return this.options.workloads(method, parts.slice(3), () => readJson(req));
    }
    if (route !== `${method} /api/v1` || parts[2] !== 'devices') throw new HttpError(404, `no route for ${method} ${url.pathname}`);

    const [, , , namespace, name, sub, side, extra] = parts;
    if (!namespace) {
      if (method === 'GET') return { devices: twins.list().map(deviceSummary) };
    } else if (name && !sub && method === 'GET') {
      return deviceDetail(twins, this.device(namespace, name));
    } else if (name && sub === 'twin' && !side && method === 'GET') {
      return deviceDetail(twins, this.device(namespace, name)).twin;
    } else if (name && sub === 'twin' && (side === 'desired' || side === 'reported') && !extra && method === 'PUT') {
      const values = parse(valuesBody, await readJson(req));
      const id = this.device(namespace, name).id;
      const change = side === 'desired' ? twins.desire(id, values, 'api') : twins.report(id, values, 'api');
      await twins.flushed();
      return { twin: change.result };
    } else if (name && sub === 'twin' && side && extra === 'history' && method === 'GET') {
      const limit = url.searchParams.has('limit') ? Number(url.searchParams.get('limit')) : undefined;
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new HttpError(400, 'limit must be a positive integer');
      return { history: twins.history(this.device(namespace, name).id, side, limit) };
    } else if (name && sub === 'state' && method === 'PUT') {
      const { state } = parse(stateBody, await readJson(req));
      const device = twins.setState(this.device(namespace, name).id, state, 'api');
      await twins.flushed();
      return deviceSummary(device);
    }
    throw new HttpError(404, `no route for ${method} ${url.pathname}`);
  }
}
