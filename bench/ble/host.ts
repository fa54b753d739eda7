/**
 * `npm run bench -- ble`: boots the VM testbed and measures notification-to-twin latency and the
 * sustained notification rate through the whole agent, against plain noble subscribed to the
 * same characteristic of the same peripheral in the same VM run.
 */
import { fileURLToPath } from 'node:url';
import { runInVm } from '../../test/vm/vm.js';
import { report, round } from '../lib/report.js';
import type { Phase } from './guest.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export async function ble(): Promise<void> {
  const run = await runInVm(`cd ${ROOT} && node dist/bench/ble/guest.js`, { timeoutMs: 300_000, shares: [ROOT] });
  const file = run.file('bench-ble.json');
  const result = file ? (JSON.parse(file) as { raw: { paced: Phase; burst: Phase }; agent: { paced: Phase; burst: Phase }; error?: string }) : { error: `no result (exit ${run.exitCode})` };
  if ('error' in result && result.error) throw new Error(`ble bench failed: ${result.error}\n${run.output.slice(-3000)}`);
  const { raw, agent } = result as { raw: { paced: Phase; burst: Phase }; agent: { paced: Phase; burst: Phase } };
  report('ble', {
    p50_ms: round(agent.paced.p50Ms, 2),
    p99_ms: round(agent.paced.p99Ms, 2),
    notifications_per_s: round(agent.burst.perSecond, 0),
    ratio_vs_raw: round(agent.burst.perSecond / raw.burst.perSecond, 2),
    raw_p50_ms: round(raw.paced.p50Ms, 2),
    raw_p99_ms: round(raw.paced.p99Ms, 2),
    raw_notifications_per_s: round(raw.burst.perSecond, 0),
    paced_arrived: `${agent.paced.arrived}/${agent.paced.sent}`,
    raw_paced_arrived: `${raw.paced.arrived}/${raw.paced.sent}`,
    burst_values_in_twin: `${agent.burst.arrived}/${agent.burst.sent}`,
  });
}
