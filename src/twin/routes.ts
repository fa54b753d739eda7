/**
 * The twin on the local API: devices, their twins with versions and delta, desired and reported
 * values, history, state. A 2xx answer to a write means the change is committed.
 */
import * as v from 'valibot';
import { AgentError } from '../errors.js';
import type { Route } from '../http/router.js';
import type { Twins } from './twins.js';
import { DELETED, toMsgTwin, type DeviceRecord, type MsgTwin } from './types.js';

const valuesBody = v.record(v.string(), v.pipe(v.union([v.string(), v.number(), v.boolean()], 'must be a string, number or boolean'), v.transform(String)));
const stateBody = v.object({ state: v.pipe(v.string(), v.minLength(1)) });

/** A device as `GET /api/v1/devices` lists it. */
export type DeviceSummary = ReturnType<typeof deviceSummary>;

/** A device as `GET /api/v1/devices/{ns}/{name}` shows it: its twin with versions, and the delta. */
export type DeviceDetail = ReturnType<typeof deviceDetail>;

/** `GET /api/v1/devices/{ns}/{name}/twin`: KubeEdge's twin, its metadata with the last write the device refused. */
export type TwinView = Record<string, MsgTwin & { metadata?: { writeError?: string } }>;

/** Who serves a device (`built-in:<protocol>`, `dmi:<mapper>`), undefined when nobody can. */
export type ServedBy = (deviceId: string) => string | undefined;

function deviceSummary(device: DeviceRecord, servedBy: ServedBy) {
  return {
    id: device.id,
    namespace: device.namespace,
    name: device.name,
    description: device.description,
    state: device.state,
    reason: device.stateReason,
    lastOnline: device.lastOnline,
    managed: device.managed,
    servedBy: device.managed ? servedBy(device.id) : undefined,
    properties: device.twin.size,
  };
}

function twinView(device: DeviceRecord): TwinView {
  const twin: TwinView = {};
  for (const [key, property] of device.twin) {
    if (property.type === DELETED) continue;
    const msg = toMsgTwin(property, true);
    twin[key] = property.writeError ? { ...msg, metadata: { ...msg.metadata, writeError: property.writeError } } : msg;
  }
  return twin;
}

function deviceDetail(twins: Twins, device: DeviceRecord, servedBy: ServedBy) {
  return { ...deviceSummary(device, servedBy), attributes: device.attributes, twin: twinView(device), delta: twins.delta(device.id)?.delta ?? {} };
}

export function twinRoutes(twins: Twins, servedBy: ServedBy): Route[] {
  const device = (params: Record<string, string>): DeviceRecord => {
    const found = twins.get(`${params.namespace}/${params.name}`);
    if (!found) throw new AgentError(404, `device ${params.namespace}/${params.name} not found`);
    return found;
  };
  const base = '/api/v1/devices/:namespace/:name';
  return [
    { method: 'GET', path: '/api/v1/devices', handle: () => ({ devices: twins.list().map((d) => deviceSummary(d, servedBy)) }) },
    { method: 'GET', path: base, handle: ({ params }) => deviceDetail(twins, device(params), servedBy) },
    { method: 'GET', path: `${base}/twin`, handle: ({ params }) => twinView(device(params)) },
    ...(['desired', 'reported'] as const).map(
      (side): Route => ({
        method: 'PUT',
        path: `${base}/twin/${side}`,
        handle: async ({ params, body }) => {
          const values = await body(valuesBody);
          const id = device(params).id;
          const change = side === 'desired' ? twins.desire(id, values, 'api') : twins.report(id, values, 'api');
          await twins.flushed();
          return { twin: change.result };
        },
      }),
    ),
    {
      method: 'GET',
      path: `${base}/twin/:side/history`,
      handle: ({ params, query }) => {
        const limit = query.has('limit') ? Number(query.get('limit')) : undefined;
        if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new AgentError(400, 'limit must be a positive integer');
        return { history: twins.history(device(params).id, params.side!, limit) };
      },
    },
    {
      method: 'PUT',
      path: `${base}/state`,
      handle: async ({ params, body }) => {
        const { state } = await body(stateBody);
        const updated = twins.setState(device(params).id, state, 'api');
        await twins.flushed();
        return deviceSummary(updated, servedBy);
      },
    },
  ];
}
