/**
 * `GET /readyz`: whether the agent can do its work now, for a service manager or a load check:
 * the broker accepts connections, the database takes commits, and the cloud link is connected
 * when it is enabled. 200 with each part's state when all are; 503 naming the parts that are not.
 * Unlike /healthz (alive), a not-ready agent is expected to recover on its own: probes wait.
 */
import { access, constants } from 'node:fs/promises';
import type { Bus } from '../bus/bus.js';
import { tryConnect } from '../connects.js';
import type { DatabaseHealth } from '../db/database.js';
import { AgentError } from '../errors.js';
import type { Route } from '../http/router.js';

export const READY_PATH = '/readyz';

/** An external broker's URL may leave the port to its scheme. */
const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'mqtts:': 8883, 'ws:': 80, 'wss:': 443 };

/** A broker that takes longer than this to accept a local connection is not serving its clients either. */
const BROKER_CONNECT_TIMEOUT_MS = 2000;

export interface ReadinessSources {
  bus: Pick<Bus, 'url'>;
  database: { health(): DatabaseHealth };
  /** The database's file, checked for write access beside the engine's own account. */
  databaseFile: string;
  /** The cloud link's state, when the cloud module is enabled. */
  cloud?: () => { connected: boolean; lastError?: string };
}

/** Each part's state: `ok`, or why it is not. */
export type Readiness = Record<string, string>;

/** Opens and closes a TCP connection to the broker: what its clients do first, so "accepting" means what they would see. */
async function brokerAccepts(url: string): Promise<string> {
  const { hostname, port: given, protocol } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, '');
  const port = Number(given) || (DEFAULT_PORTS[protocol] ?? 1883);
  const error = await tryConnect({ host, port }, BROKER_CONNECT_TIMEOUT_MS);
  return error ? `not accepting on ${host}:${port}: ${error.message}` : 'ok';
}

/** Commits succeed (the engine's own account) and the file is still writable by this process (a read-only remount shows here first). */
async function databaseWritable({ database, databaseFile }: ReadinessSources): Promise<string> {
  const health = database.health();
  if (health.status !== 'ok') return health.reason;
  try {
    await access(databaseFile, constants.W_OK);
    return 'ok';
  } catch (error) {
    return `${databaseFile} is not writable (${(error as NodeJS.ErrnoException).code})`;
  }
}

export async function readiness(sources: ReadinessSources): Promise<Readiness> {
  const [broker, database] = await Promise.all([brokerAccepts(sources.bus.url), databaseWritable(sources)]);
  const result: Readiness = { broker, database };
  if (sources.cloud) {
    const link = sources.cloud();
    result.cloud = link.connected ? 'ok' : `not connected${link.lastError ? `: ${link.lastError}` : ''}`;
  }
  return result;
}

/** The parts that are not ready, as one line; empty when all are. */
export function notReady(state: Readiness): string {
  return Object.entries(state)
    .filter(([, value]) => value !== 'ok')
    .map(([part, value]) => `${part}: ${value}`)
    .join('; ');
}

export function readyRoutes(sources: ReadinessSources): Route[] {
  return [
    {
      method: 'GET',
      path: READY_PATH,
      handle: async () => {
        const state = await readiness(sources);
        const reasons = notReady(state);
        if (reasons) throw new AgentError(503, `not ready: ${reasons}`);
        return { status: 'ready', ...state };
      },
    },
  ];
}
