/** The shape of bench/cloud-replay's traffic and how its driver talks to the agent worker. */
export const DEVICES = 100;
export const PROPERTIES = 10;

export type WorkerCommand = { cmd: 'devices' } | { cmd: 'generate'; seconds: number } | { cmd: 'drained' };
