/**
 * Workloads by state and their last migration each way with its downtime, read from the
 * workloads' list and history when scraped (the history is SQLite's, kept per workload).
 */
import type { HistoryEvent, WorkloadState } from '../workloads/index.js';
import { byLabel, gauge, type Family, type Sample } from './family.js';

export interface WorkloadsView {
  list(): Promise<ReadonlyArray<{ name: string; state: WorkloadState }>>;
  /** Newest first. */
  history(name: string): Promise<readonly HistoryEvent[]>;
}

/** The history events a finished migration leaves, out (the state it ends in) and in. */
const MIGRATED = { out: 'migrated', in: 'migrated in' } as const;

interface LastMigration {
  workload: string;
  direction: keyof typeof MIGRATED;
  at: number;
  downtimeMs?: number;
  totalTimeMs?: number;
}

function lastMigrations(workload: string, history: readonly HistoryEvent[]): LastMigration[] {
  return Object.entries(MIGRATED).flatMap(([direction, event]) => {
    const found = history.find((entry) => entry.event === event);
    if (!found) return [];
    const { downtimeMs, totalTimeMs } = found.detail ?? {};
    return [
      {
        workload,
        direction: direction as keyof typeof MIGRATED,
        at: Date.parse(found.at),
        downtimeMs: typeof downtimeMs === 'number' ? downtimeMs : undefined,
        totalTimeMs: typeof totalTimeMs === 'number' ? totalTimeMs : undefined,
      },
    ];
  });
}

function seconds(migrations: LastMigration[], pick: (m: LastMigration) => number | undefined): Sample[] {
  return migrations.flatMap((m) => {
    const ms = pick(m);
    return ms === undefined || Number.isNaN(ms) ? [] : [{ labels: { workload: m.workload, direction: m.direction }, value: ms / 1000 }];
  });
}

export async function workloadsFamilies(view: WorkloadsView): Promise<Family[]> {
  const workloads = await view.list();
  const byState: Record<WorkloadState, number> = { starting: 0, running: 0, paused: 0, stopped: 0, failed: 0, migrated: 0, incoming: 0, idle: 0 };
  for (const workload of workloads) byState[workload.state]++;
  const migrations = (await Promise.all(workloads.map(async ({ name }) => lastMigrations(name, await view.history(name))))).flat();
  return [
    gauge('edge_agent_workloads', 'Workloads, by state.', byLabel('state', byState)),
    gauge('edge_agent_workload_migration_timestamp_seconds', "When the workload's last migration (out or in) finished.", seconds(migrations, (m) => m.at)),
    gauge('edge_agent_workload_migration_downtime_seconds', "Downtime of the workload's last migration: the guest stopped here until it ran there.", seconds(migrations, (m) => m.downtimeMs)),
    gauge('edge_agent_workload_migration_duration_seconds', "Total time of the workload's last migration.", seconds(migrations, (m) => m.totalTimeMs)),
  ];
}
