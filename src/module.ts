/**
 * The one shape every part of the agent has. The composition root (agent.ts) starts modules in
 * order and stops them in reverse (lifecycle.ts); nothing starts in a constructor.
 */
import type { Route } from './http/router.js';

/** Module names, each once; they match the folders. */
export const MODULE = {
  catalog: 'catalog',
  kubeedge: 'kubeedge',
  bus: 'bus',
  telemetry: 'telemetry',
  wifi: 'wifi',
  workloads: 'workloads',
  cloud: 'cloud',
  dmi: 'dmi',
  mapperhost: 'mapperhost',
  api: 'api',
  metrics: 'metrics',
} as const;

export type ModuleName = (typeof MODULE)[keyof typeof MODULE];

export interface Module {
  readonly name: ModuleName;
  /** Resolves once the module serves; `signal` aborts when the agent gives up starting (a later module failed, or a stop came first). */
  start(signal: AbortSignal): Promise<void>;
  /** Releases what `start` took: ports, processes, listeners on other modules. Called once, also after a failed start. */
  stop(): Promise<void>;
  /** What it serves on the local API. */
  readonly routes?: readonly Route[];
}

/** Takes back a listener registered on another module. */
export type Remove = () => void;
