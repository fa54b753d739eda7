/**
 * `GET /healthz`: the agent answers, and says which node it is, where its bus is, and whether its
 * database is sound (`degraded`, with the reason, when not). Degraded still answers 200: the
 * agent serves, and a probe that restarted it would only restart it into the same state.
 */
import type { Bus } from '../bus/bus.js';
import type { DatabaseHealth } from '../db/database.js';
import type { Route } from '../http/router.js';

/** Served without the API token, with /readyz (ready.ts): probes need them, and they tell nothing a caller could misuse. */
export const HEALTH_PATH = '/healthz';

export function healthRoutes(node: string, bus: Bus, database: { health(): DatabaseHealth }): Route[] {
  return [{ method: 'GET', path: HEALTH_PATH, handle: () => ({ ...database.health(), node, mqtt: bus.url }) }];
}
