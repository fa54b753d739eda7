/** `GET /healthz`: the agent answers, and says which node it is and where its bus is. */
import type { Bus } from '../bus/bus.js';
import type { Route } from '../http/router.js';

export function healthRoutes(node: string, bus: Bus): Route[] {
  return [{ method: 'GET', path: '/healthz', handle: () => ({ status: 'ok', node, mqtt: bus.url }) }];
}
