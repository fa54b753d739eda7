/**
 * Runs inside the VM: mac80211_hwsim radios, hostapd APs in a network namespace of their own
 * (so station traffic really crosses the simulated air), a DHCP server per AP, and one radio
 * left in the root namespace for the station side.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { WifiState } from '../../src/wifi/state.js';

export interface ApSpec {
  ssid: string;
  channel: number;
  passphrase?: string;
  /** The AP's subnet is 10.0.<subnet>.0/24; it is 10.0.<subnet>.1. */
  subnet: number;
  /** Channel utilization 0..255 the AP advertises in its BSS Load element. */
  utilization?: number;
}

export interface RunningAp {
  spec: ApSpec;
  ifname: string;
  bssid: string;
}

export const AP_NAMESPACE = 'ap';

const sh = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const inAp = (command: string, args: string[]) => sh('ip', ['netns', 'exec', AP_NAMESPACE, command, ...args]);

function phyOf(ifname: string): string {
  return readFileSync(`/sys/class/net/${ifname}/phy80211/name`, 'utf8').trim();
}

export class WifiTestbed {
  readonly aps = new Map<string, RunningAp>();
  private readonly processes = new Map<string, ChildProcess[]>();
  private readonly apInterfaces: string[];
  /** The radio left for the agent: its interface in the root namespace. */
  readonly stationInterface: string;

  constructor({ apRadios, channels }: { apRadios: number; channels: number }) {
    sh('modprobe', ['mac80211_hwsim', `radios=${apRadios + 1}`, `channels=${channels}`]);
    const wlans = readdirSync('/sys/class/net').filter((name) => /^wlan\d+$/.test(name)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
    this.apInterfaces = wlans.slice(0, apRadios);
    this.stationInterface = wlans[apRadios]!;
    sh('ip', ['netns', 'add', AP_NAMESPACE]);
    for (const ifname of this.apInterfaces) sh('iw', ['phy', phyOf(ifname), 'set', 'netns', 'name', AP_NAMESPACE]);
    inAp('ip', ['link', 'set', 'lo', 'up']);
    inAp('sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0']);
  }

  /** Starts an AP on the next free AP radio (or on `ifname`) and resolves once hostapd says AP-ENABLED. */
  async startAp(spec: ApSpec, ifname = this.apInterfaces.find((i) => ![...this.aps.values()].some((ap) => ap.ifname === i))): Promise<RunningAp> {
    if (!ifname) throw new Error('no free AP radio');
    const conf = `/tmp/hostapd-${spec.ssid}.conf`;
    const lines = [`interface=${ifname}`, 'driver=nl80211', `ssid=${spec.ssid}`, 'hw_mode=g', `channel=${spec.channel}`, `ctrl_interface=/run/hostapd-${spec.ssid}`];
    if (spec.passphrase) lines.push('wpa=2', 'wpa_key_mgmt=WPA-PSK', 'rsn_pairwise=CCMP', `wpa_passphrase=${spec.passphrase}`);
    if (spec.utilization !== undefined) lines.push(`bss_load_test=3:${spec.utilization}:10000`);
    writeFileSync(conf, `${lines.join('\n')}\n`);
    inAp('ip', ['addr', 'flush', 'dev', ifname]);
    inAp('ip', ['addr', 'add', `10.0.${spec.subnet}.1/24`, 'dev', ifname]);
    const hostapd = spawn('ip', ['netns', 'exec', AP_NAMESPACE, 'hostapd', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(() => reject(new Error(`hostapd ${spec.ssid} did not come up:\n${log}`)), 20_000);
      createInterface({ input: hostapd.stdout! }).on('line', (line) => {
        log += `${line}\n`;
        if (line.includes('AP-ENABLED')) {
          clearTimeout(timer);
          resolve();
        }
      });
      hostapd.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`hostapd ${spec.ssid} exited with ${code}:\n${log}`));
      });
    });
    const udhcpdConf = `/tmp/udhcpd-${spec.ssid}.conf`;
    writeFileSync(
      udhcpdConf,
      [`interface ${ifname}`, `start 10.0.${spec.subnet}.100`, `end 10.0.${spec.subnet}.199`, `lease_file /tmp/udhcpd-${spec.ssid}.leases`, `pidfile /tmp/udhcpd-${spec.ssid}.pid`, 'option subnet 255.255.255.0', `option router 10.0.${spec.subnet}.1`, 'option lease 600', ''].join('\n'),
    );
    writeFileSync(`/tmp/udhcpd-${spec.ssid}.leases`, '');
    const udhcpd = spawn('ip', ['netns', 'exec', AP_NAMESPACE, 'busybox', 'udhcpd', '-f', udhcpdConf], { stdio: 'ignore' });
    this.processes.set(spec.ssid, [hostapd, udhcpd]);
    const bssid = inAp('cat', [`/sys/class/net/${ifname}/address`]).trim();
    const ap = { spec, ifname, bssid };
    this.aps.set(spec.ssid, ap);
    return ap;
  }

  /** Kills the AP's hostapd with `signal`: SIGTERM lets it deauthenticate its stations, SIGKILL just vanishes. */
  async stopAp(ssid: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const [hostapd, udhcpd] = this.processes.get(ssid) ?? [];
    this.processes.delete(ssid);
    this.aps.delete(ssid);
    for (const child of [hostapd, udhcpd]) {
      if (!child || child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    }
  }

  async stop(): Promise<void> {
    for (const ssid of [...this.processes.keys()]) await this.stopAp(ssid, 'SIGTERM');
  }
}

/** Polls `manager.state()` until `test` holds; the error names what was awaited and the last state. */
export async function waitForWifi(
  manager: { state(): WifiState },
  what: string,
  test: (state: WifiState) => boolean,
  { timeoutMs = 180_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<WifiState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = manager.state();
    if (test(state)) return state;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
