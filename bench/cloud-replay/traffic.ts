/** The shape of bench/cloud-replay's traffic and how its driver talks to the agent worker. */
export const DEVICES = 100;
export const PROPERTIES = 10;

/** `generate`: every device reports its ten properties each second; `single`: one property per report, `reports` of them. */
export type WorkerCommand = { cmd: 'devices' } | { cmd: 'generate'; seconds: number } | { cmd: 'single'; reports: number } | { cmd: 'drained' };
