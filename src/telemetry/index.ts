/** The telemetry module: one sampler for the offload policy and the cloud node. */
export { reportedTelemetry, TelemetryModule, type HostFacts, type ReportedTelemetry, type Telemetry, type TelemetryDeps } from './telemetry.js';
