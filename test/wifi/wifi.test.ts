/**
 * WiFi against real Linux WiFi: each scenario boots the VM testbed (mac80211_hwsim radios,
 * hostapd APs, DHCP servers) and runs the agent's WiFi manager inside; these tests check what
 * the scenario observed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { IdentityState, WifiState } from '../../src/wifi/state.js';
import { runScenario, VM_TIMEOUT_MS } from '../support/scenario.js';

const byName = (state: WifiState) => new Map(state.identities.map((i) => [i.name, i]));

describe('two identities on a radio that holds two channels', () => {
  let result: Record<string, unknown>;
  beforeAll(async () => {
    result = await runScenario('wifi-multichannel');
  }, VM_TIMEOUT_MS);

  it('associates each identity, with its own MAC, to its own AP, on two channels at once', () => {
    const ready = result.ready as WifiState;
    const [a, b] = ready.identities as [IdentityState, IdentityState];
    expect(new Set([a.ssid, b.ssid])).toEqual(new Set(['apA', 'apB']));
    expect(ready.channels).toEqual([1, 6]);
    expect(a.mac).not.toBe(b.mac);
    for (const identity of ready.identities) {
      expect(identity.mac).toMatch(/^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
      const link = (JSON.parse(result.macs as string) as Array<{ ifname: string; address: string }>).find((l) => l.ifname === identity.name);
      expect(link?.address).toBe(identity.mac);
    }
  });

  it('gives each identity its own DHCP address in the subnet of its AP', () => {
    const ready = result.ready as WifiState;
    for (const identity of ready.identities) {
      const subnet = identity.ssid === 'apA' ? 1 : 2;
      expect(identity.address).toMatch(new RegExp(`^10\\.0\\.${subnet}\\.\\d+$`));
    }
  });

  it('avoids an AP whose passphrase is wrong, naming the reason', () => {
    expect(result.wrongKeyError).toMatch(/wrong passphrase for apD/);
  });

  it('marks the open network untrusted and sends sensitive traffic through the WPA2 identity only', () => {
    const ready = result.ready as WifiState;
    const wpa = ready.identities.find((i) => i.ssid === 'apB')!;
    const open = ready.identities.find((i) => i.ssid === 'apA')!;
    expect(wpa.trusted).toBe(true);
    expect(open.trusted).toBe(false);
    expect(result.sensitiveSource).toEqual({ via: 'identity', identity: wpa.name, address: wpa.address, table: expect.any(Number), trusted: true });
  });

  it('carries one MPTCP connection over both identities (a subflow from each address)', () => {
    const ready = result.ready as WifiState;
    const subflows = result.subflows as string;
    for (const identity of ready.identities) expect(subflows).toContain(`${identity.address}`);
    expect(subflows.match(/tcp-ulp-mptcp/g)?.length).toBeGreaterThanOrEqual(2);
    expect(result.mptcpEndpoints).toMatch(/subflow dev wid0/);
    expect(result.mptcpEndpoints).toMatch(/subflow dev wid1/);
    expect(result.mptcpReceived).toBeGreaterThan(1_000_000);
  });

  it('moves the identity of an AP that vanished, and leaves the other identity alone', () => {
    const ready = byName(result.ready as WifiState);
    const recovered = result.recovered as WifiState;
    const moved = recovered.identities.find((i) => i.name === result.mptcpIdentity)!;
    expect(moved.ssid).toBe('apC');
    expect(moved.status).toBe('connected');
    const other = result.otherUntouched as IdentityState;
    expect(other.status).toBe('connected');
    expect(other.bssid).toBe(ready.get(other.name)!.bssid);
    expect(other.address).toBe(ready.get(other.name)!.address);
    expect(recovered.lastRecoveryMs).toBeGreaterThan(0);
  });

  it('removes its interfaces when it stops', () => {
    expect(result.interfacesAfterStop).not.toMatch(/wid\d/);
  });
});

describe('a radio that holds one channel, driven by the whole agent', () => {
  let result: Record<string, unknown>;
  beforeAll(async () => {
    result = await runScenario('wifi-channel-switch');
  }, VM_TIMEOUT_MS);

  it('moves the whole radio to the channel whose APs give more airtime, and measures the switch', () => {
    const before = result.before as WifiState;
    const after = result.after as WifiState;
    expect(before.channels).toEqual([1]);
    expect(after.lastSwitch).toMatchObject({ from: [1], to: [6] });
    expect(after.lastSwitch!.ms).toBeGreaterThan(0);
    expect(new Set(after.identities.map((i) => i.ssid))).toEqual(new Set(['quietA', 'quietB']));
  });

  it('does not flap: later rounds keep the radio where it is', () => {
    const after = result.after as WifiState;
    const settled = result.settled as WifiState;
    expect(settled.channels).toEqual([6]);
    expect(settled.lastSwitch).toEqual(after.lastSwitch);
  });

  it('shows identities, APs and the last switch in `edge-agent wifi`', () => {
    const cli = result.cli as string;
    expect(cli).toMatch(/wpa_supplicant on phy\d+: channels 6 \(radio can hold 1 at once\)/);
    expect(cli).toMatch(/wid0 .* connected +quiet[AB]/);
    expect(cli).toMatch(/busyA .* 78%/);
    expect(cli).toMatch(/last channel switch: 1 -> 6 in \d+ ms/);
  });

  it('publishes link quality on the telemetry topic', () => {
    const telemetry = result.telemetry as { messages: number; last: WifiState };
    expect(telemetry.messages).toBeGreaterThan(0);
    expect(telemetry.last.identities[0]).toHaveProperty('signal');
  });

  it('stops cleanly on SIGTERM and removes its interfaces', () => {
    expect(result.agentExit).toBe(0);
    expect(result.interfacesAfterStop).not.toMatch(/wid\d/);
  });
});
