/**
 * The workloads' list and history through the routes the workloads module serves on the local
 * API: its public surface, read in-process without a round trip through HTTP.
 */
import type { Route } from '../http/router.js';
import type { WorkloadDetail, WorkloadList } from '../workloads/index.js';
import type { WorkloadsView } from './workloads.js';

const BASE = '/api/v1/workloads';

function getRoute(routes: readonly Route[], path: string): Route {
  const route = routes.find((r) => r.method === 'GET' && r.path === path);
  if (!route) throw new Error(`the workloads module serves no GET ${path}`);
  return route;
}

async function get<T>(route: Route, params: Record<string, string> = {}): Promise<T> {
  const answer = route.handle({ params, query: new URLSearchParams(), body: () => Promise.reject(new Error('a GET has no body')), context: undefined });
  return (await answer) as T;
}

export function workloadsThroughApi(routes: readonly Route[]): WorkloadsView {
  const list = getRoute(routes, BASE);
  const detail = getRoute(routes, `${BASE}/:name`);
  return {
    list: async () => (await get<WorkloadList>(list)).workloads,
    history: async (name) => (await get<WorkloadDetail>(detail, { name })).history,
  };
}
