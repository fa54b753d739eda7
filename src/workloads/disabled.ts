/** What the local API says of workloads while they are disabled; the workloads module's own code is then never loaded. */
import { AgentError } from '../errors.js';
import type { Method, Route } from '../http/router.js';

const disabled = (): never => {
  throw new AgentError(404, 'workloads are disabled (workloads.enabled in the config)');
};

export const workloadsDisabledRoutes: Route[] = (['GET', 'POST', 'PUT', 'DELETE'] as Method[]).flatMap((method) => [
  { method, path: '/api/v1/workloads', handle: disabled },
  { method, path: '/api/v1/workloads/*', handle: disabled },
]);
