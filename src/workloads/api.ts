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
import type { Route } from '../http/router.js';
import { reportedTelemetry, type ReportedTelemetry } from '../telemetry/index.js';
import type { WorkloadManager, WorkloadView } from './manager.js';
import type { MigrationResult, OutgoingMigrations } from './migrate-out.js';
import type { OnDemandState, OnDemandWorkload } from './on-demand.js';
import type { PolicyLoop, PolicyState } from './policy-loop.js';
import type { HistoryEvent } from './store.js';

const BASE = '/api/v1/workloads';

const runBody = v.object({ name: v.pipe(v.string(), v.minLength(1)) });
const migrateBody = v.object({ peer: v.pipe(v.string(), v.minLength(1)) });

/** GET /api/v1/workloads */
export interface WorkloadList {
  workloads: WorkloadView[];
  onDemand: OnDemandState[];
}

/** GET /api/v1/workloads/{name} */
export interface WorkloadDetail extends WorkloadView {
  history: HistoryEvent[];
  console: string;
}

/** GET /api/v1/workloads/identity: what the peers' config needs of this agent. */
export interface IdentityAnswer {
  fingerprint: string;
  port: number;
}

/** PUT /api/v1/workloads/telemetry: every reported value now in force. */
export interface TelemetryAnswer {
  reported: ReportedTelemetry;
}

/** What the routes reach of the started module. */
export interface LocalApiParts {
  manager: WorkloadManager;
  outgoing: OutgoingMigrations;
  onDemand: readonly OnDemandWorkload[];
  policy: PolicyLoop;
  endpoint(): IdentityAnswer;
}

export function localRoutes(parts: () => LocalApiParts): Route[] {
  return [
    {
      method: 'GET',
      path: BASE,
      handle: (): WorkloadList => {
        const { manager, onDemand } = parts();
        return { workloads: manager.list(), onDemand: onDemand.map((listener) => listener.state()) };
      },
    },
    { method: 'POST', path: BASE, handle: async ({ body }): Promise<WorkloadView> => parts().manager.run((await body(runBody)).name) },
    { method: 'GET', path: `${BASE}/identity`, handle: (): IdentityAnswer => parts().endpoint() },
    { method: 'GET', path: `${BASE}/policy`, handle: (): PolicyState => parts().policy.state() },
    { method: 'PUT', path: `${BASE}/telemetry`, handle: async ({ body }): Promise<TelemetryAnswer> => ({ reported: parts().policy.report(await body(reportedTelemetry)) }) },
    {
      method: 'GET',
      path: `${BASE}/:name`,
      handle: ({ params }): WorkloadDetail => {
        const { manager } = parts();
        const name = params.name!;
        return { ...manager.get(name), history: manager.history(name), console: manager.consoleTail(name) };
      },
    },
    { method: 'DELETE', path: `${BASE}/:name`, handle: ({ params }): Promise<WorkloadView> => parts().manager.stop(params.name!) },
    { method: 'POST', path: `${BASE}/:name/pause`, handle: ({ params }): Promise<WorkloadView> => parts().manager.pause(params.name!, true) },
    { method: 'POST', path: `${BASE}/:name/resume`, handle: ({ params }): Promise<WorkloadView> => parts().manager.pause(params.name!, false) },
    {
      method: 'POST',
      path: `${BASE}/:name/migrate`,
      handle: async ({ params, body }): Promise<MigrationResult> => parts().outgoing.migrate(params.name!, (await body(migrateBody)).peer),
    },
    { method: 'POST', path: `${BASE}/:name/return`, handle: ({ params }): Promise<MigrationResult> => parts().outgoing.bringBack(params.name!) },
  ];
}
