/**
 * `npm run bench -- paths`: boots the VM testbed and live-migrates the 128 MiB Linux guest from
 * the edge agent to the meta-edge behind two trusted APs (guest.ts), pooled over both trusted
 * identities (MPTCP) and over one identity, alternating rounds in the same VM run; then pooled
 * with the AP of the stream's first subflow killed midway. `pooled_speedup` is the median total
 * time over one identity divided by the median pooled one; `failover_completed` says whether
 * the migration that lost an AP finished.
 */
import { fileURLToPath } from 'node:url';
import { runInVm } from '../../test/vm/vm.js';
import { median, report, round } from '../lib/report.js';
import type { Round } from './round.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export async function paths(): Promise<void> {
  const run = await runInVm(`cd ${ROOT} && node dist/bench/paths/guest.js`, { timeoutMs: 2_400_000, memoryMb: 3072, shares: [ROOT] });
  const file = run.file('bench-paths.json');
  const result = file ? (JSON.parse(file) as { rounds: Round[]; error?: string }) : { rounds: [], error: `no result (exit ${run.exitCode})` };
  if (result.error) throw new Error(`paths bench failed: ${result.error}\n${run.output.slice(-3000)}`);
  const of = (kind: Round['kind']) => result.rounds.filter((r) => r.kind === kind);
  const failed = result.rounds.filter((r) => r.kind !== 'failover' && r.status !== 200);
  if (failed.length > 0) throw new Error(`paths bench: migrations failed: ${JSON.stringify(failed)}\n${JSON.stringify(result, null, 1).slice(-6000)}`);
  // The whole request (offer, stream, confirmation): QEMU's own total-time came back 0 from some completed migrations here.
  const wall = (kind: Round['kind']) => median(of(kind).map((r) => r.wallMs));
  const failover = of('failover')[0]!;
  report('paths', {
    pooled_ms: round(wall('pooled'), 0),
    single_ms: round(wall('single'), 0),
    pooled_speedup: round(wall('single') / wall('pooled'), 2),
    pooled_downtime_ms: round(median(of('pooled').map((r) => r.downtimeMs!)), 0),
    single_downtime_ms: round(median(of('single').map((r) => r.downtimeMs!)), 0),
    transferred_mb: round(median(result.rounds.filter((r) => r.status === 200).map((r) => r.transferredBytes! / 1e6)), 1),
    pooled_subflows: Math.min(...of('pooled').map((r) => r.subflows)),
    single_subflows: Math.max(...of('single').map((r) => r.subflows)),
    rounds: of('pooled').length,
    failover_completed: failover.status === 200,
    failover_ms: failover.wallMs,
    ...(failover.error ? { failover_error: failover.error } : {}),
  });
}
