/**
 * Runs inside the VM testbed (see bench/wifi/host.ts): times the WiFi manager on real
 * mac80211_hwsim radios and plain wpa_supplicant on the same radio as the baseline.
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createLogger } from '../../src/log.js';
import { wifiConfig } from '../../src/wifi/config.js';
import { WpaWifiManager } from '../../src/wifi/wpa-supplicant.js';
import { writeResult } from '../../test/vm/scenario.js';
import { waitForWifi, WifiTestbed } from '../../test/vm/wifi-testbed.js';
import { median } from '../lib/report.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const IDENTITIES = 2;
/** Timings are read by polling: poll often. */
const POLL = { intervalMs: 20 };

/** One interface, one network, wpa_supplicant as a distribution runs it: start to COMPLETED. */
async function plainAssociation(ifname: string, ssid: string): Promise<number> {
  writeFileSync('/tmp/plain.conf', `ctrl_interface=/run/plain-wpa\np2p_disabled=1\nnetwork={\n ssid="${ssid}"\n key_mgmt=NONE\n}\n`);
  const started = performance.now();
  const daemon = spawn('wpa_supplicant', ['-i', ifname, '-D', 'nl80211', '-c', '/tmp/plain.conf'], { stdio: 'ignore' });
  try {
    for (;;) {
      await sleep(20);
      const status = (() => {
        try {
          return execFileSync('wpa_cli', ['-p', '/run/plain-wpa', '-i', ifname, 'status'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        } catch {
          return '';
        }
      })();
      if (status.includes('wpa_state=COMPLETED')) return performance.now() - started;
      if (performance.now() - started > 60_000) throw new Error('plain wpa_supplicant did not associate');
    }
  } finally {
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill();
    await exited;
  }
}

const testbed = new WifiTestbed({ apRadios: 5, channels: 1 });
const result: Record<string, unknown> = {};
try {
  await testbed.startAp({ ssid: 'busyA', channel: 1, subnet: 1, utilization: 200 });
  await testbed.startAp({ ssid: 'busyB', channel: 1, subnet: 2, utilization: 200 });
  const baseline: number[] = [];
  for (let i = 0; i < 3; i++) baseline.push(await plainAssociation(testbed.stationInterface, 'busyA'));
  result.baseline_associate_ms = median(baseline);

  const started = performance.now();
  const manager = await WpaWifiManager.start(
    wifiConfig({
      enabled: true,
      radio: testbed.stationInterface,
      identities: IDENTITIES,
      networks: ['busyA', 'busyB', 'quietA', 'quietB', 'quietC'].map((ssid) => ({ ssid })),
      evaluateIntervalMs: 500,
      scanIntervalMs: 2000,
      dhcp: false,
    }),
    'bench-vm',
    '/run/edge-agent',
    createLogger('warn'),
  );
  const associated = await waitForWifi(manager, 'the identities associated', (s) => s.identities.every((i) => i.status === 'connected'), POLL);
  result.associate_ms = performance.now() - started;
  result.identities_associated = associated.identities.length;

  for (const [index, ssid] of ['quietA', 'quietB', 'quietC'].entries()) await testbed.startAp({ ssid, channel: 6, subnet: 3 + index, utilization: 10 });
  const switched = await waitForWifi(manager, 'the switch to channel 6', (s) => s.lastSwitch !== undefined && s.identities.every((i) => i.status === 'connected' && i.channel === 6), POLL);
  result.switch_ms = switched.lastSwitch!.ms;

  const victim = switched.identities[0]!;
  const killedAt = performance.now();
  await testbed.stopAp(victim.ssid!, 'SIGKILL');
  await waitForWifi(manager, 'the recovery', (s) => s.identities.every((i) => i.status === 'connected') && s.identities[0]!.bssid !== victim.bssid, POLL);
  result.recovery_ms = performance.now() - killedAt;
  result.reassociate_ms = manager.state().lastRecoveryMs;
  await manager.stop();
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await testbed.stop();
  writeResult('bench-wifi', result);
}
