/** The workloads module and the answers of its API, for the composition root, the CLI and the tests. */
export { WorkloadsModule, type WorkloadsDeps } from './module.js';
export { identityDir } from './identity.js';
export type { IdentityAnswer, TelemetryAnswer, WorkloadDetail, WorkloadList } from './api.js';
export type { WorkloadView } from './manager.js';
export type { MigrationResult } from './migrate-out.js';
export type { OnDemandState } from './on-demand.js';
export type { PolicyState } from './policy-loop.js';
export type { HistoryEvent, WorkloadRecord, WorkloadState } from './store.js';
