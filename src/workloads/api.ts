/**
 * The local API of workloads (under /api/v1/workloads):
 *   GET    /                     the workloads, their state and where they are
 *   POST   /                     {"name"} starts one
 *   GET    /identity             this agent's peer fingerprint and endpoint
 *   GET    /policy               the offload policy's last decision and its inputs
 *   PUT    /telemetry            reported inputs (battery, charging, mode, …; null clears one)
 *   GET    /{name}               one workload, its history and console tail
 *   DELETE /{name}               stops it
 *   POST   /{name}/pause         pauses its guest; /resume lets it run again
 *   POST   /{name}/migrate       {"peer"} moves it to the peer (live migration)
 *   POST   /{name}/return        asks the peer it went to for it back
 */
import * as v from 'valibot';
import { HttpError } from '../api/server.js';
import { parseWith } from '../schema.js';
import type { Workloads } from './index.js';
import { WorkloadError } from './manager.js';
import { reportedTelemetry } from '../telemetry/index.js';

const runBody = v.object({ name: v.pipe(v.string(), v.minLength(1)) });
const migrateBody = v.object({ peer: v.pipe(v.string(), v.minLength(1)) });

function parse<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const parsed = parseWith(schema, input);
  if (!parsed.ok) throw new HttpError(400, parsed.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '));
  return parsed.value;
}

export function workloadsApi(workloads: Workloads) {
  const route = async (method: string, path: string[], body: () => Promise<unknown>): Promise<unknown> => {
    const [first, action] = path;
    const { manager } = workloads;
    if (!first) {
      if (method === 'GET') return { workloads: workloads.list(), onDemand: workloads.onDemandState() };
      if (method === 'POST') return manager.run(parse(runBody, await body()).name);
    } else if (first === 'identity' && method === 'GET') {
      return { fingerprint: workloads.identity.fingerprint, port: workloads.port };
    } else if (first === 'policy' && method === 'GET') {
      return workloads.policyState();
    } else if (first === 'telemetry' && method === 'PUT') {
      return { reported: workloads.reportTelemetry(parse(reportedTelemetry, await body())) };
    } else if (!action && method === 'GET') {
      return { ...manager.get(first), history: manager.store.history(first), console: manager.consoleTail(first) };
    } else if (!action && method === 'DELETE') {
      return manager.stop(first);
    } else if ((action === 'pause' || action === 'resume') && method === 'POST') {
      return manager.pause(first, action === 'pause');
    } else if (action === 'migrate' && method === 'POST') {
      return workloads.migrate(first, parse(migrateBody, await body()).peer);
    } else if (action === 'return' && method === 'POST') {
      return workloads.bringBack(first);
    }
    throw new HttpError(404, `no route for ${method} /api/v1/workloads/${path.join('/')}`);
  };
  return (method: string, path: string[], body: () => Promise<unknown>) =>
    route(method, path, body).catch((error: unknown) => {
      throw error instanceof WorkloadError ? new HttpError(error.status, error.message) : error;
    });
}
