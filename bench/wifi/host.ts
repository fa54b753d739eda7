/**
 * `npm run bench -- wifi`: boots the VM testbed and times, on real mac80211_hwsim radios,
 * associating the identities, a whole-radio channel switch, and recovery after an AP vanishes,
 * against plain wpa_supplicant associating one interface in the same VM run.
 */
import { fileURLToPath } from 'node:url';
import { runInVm } from '../../test/vm/vm.js';
import { report, round } from '../lib/report.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export async function wifi(): Promise<void> {
  const run = await runInVm(`cd ${ROOT} && node dist/bench/wifi/guest.js`, { timeoutMs: 300_000, shares: [ROOT] });
  const file = run.file('bench-wifi.json');
  const result = file ? (JSON.parse(file) as Record<string, number | string>) : { error: `no result (exit ${run.exitCode})` };
  if (result.error) throw new Error(`wifi bench failed: ${result.error}\n${run.output.slice(-3000)}`);
  const ms = (key: string) => round(Number(result[key]), 0);
  report('wifi', {
    identities_associated: Number(result.identities_associated),
    associate_ms: ms('associate_ms'),
    baseline_associate_ms: ms('baseline_associate_ms'),
    ratio_vs_baseline: round(Number(result.associate_ms) / Number(result.baseline_associate_ms), 2),
    switch_ms: ms('switch_ms'),
    recovery_ms: ms('recovery_ms'),
    reassociate_ms: ms('reassociate_ms'),
  });
}
