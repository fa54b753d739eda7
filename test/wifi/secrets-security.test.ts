/**
 * No WiFi passphrase on a command line (issue 14, item 5): the nmcli arguments, and the real
 * NetworkManager backend (node-wifi's scan, nmcli.ts's connect) driving a stand-in `nmcli` on
 * PATH that records its arguments and standard input (this kernel has no WiFi and no
 * NetworkManager runs here); and the DHCP client's script, the agent user's alone.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { DhcpClient } from '../../src/wifi/addressing.js';
import { wifiConfig } from '../../src/wifi/config.js';
import { NetworkManagerWifi } from '../../src/wifi/network-manager.js';
import { nmcliConnectArgs } from '../../src/wifi/nmcli.js';
import { waitFor } from '../support/wait.js';

const PASSPHRASE = 'correct horse battery staple';
const log = createLogger('silent');

describe('nmcli arguments', () => {
  it('carry no passphrase: --ask has nmcli read it from standard input', () => {
    const args = nmcliConnectArgs({ ssid: 'home-net', passphrase: PASSPHRASE, ifname: 'wlan0', timeoutMs: 15_000 });
    expect(args).toEqual(['--ask', '--wait', '15', 'device', 'wifi', 'connect', 'home-net', 'ifname', 'wlan0']);
  });

  it('carry nothing for an open network: no "undefined", no password, no --ask', () => {
    const args = nmcliConnectArgs({ ssid: 'cafe-open', ifname: 'wlan0', timeoutMs: 15_000 });
    expect(args).toEqual(['--wait', '15', 'device', 'wifi', 'connect', 'cafe-open', 'ifname', 'wlan0']);
  });
});

/**
 * A stand-in for nmcli: `device wifi list` answers with two APs in nmcli's terse format (the
 * connected one marked `yes`); `device wifi connect` records its arguments and standard input.
 */
const FAKE_NMCLI = `#!/bin/sh
dir=$(dirname "$0")
case " $* " in
  *" connect "*)
    cat > "$dir/connect.stdin"
    printf '%s\\n' "$@" > "$dir/connect.argv"
    previous=
    for arg in "$@"; do
      [ "$previous" = connect ] && printf '%s' "$arg" > "$dir/connected"
      previous=$arg
    done
    ;;
  *" list "*)
    connected=$(cat "$dir/connected" 2>/dev/null)
    for ap in 'home-net:AA\\:BB\\:CC\\:DD\\:EE\\:01:Infra:6:2437 MHz:80:WPA2:(none):pair_ccmp group_ccmp psk' \\
              'cafe-open:AA\\:BB\\:CC\\:DD\\:EE\\:02:Infra:11:2462 MHz:60:--:(none):(none)'; do
      active=no
      [ "\${ap%%:*}" = "$connected" ] && active=yes
      echo "$active:$ap:wlan0"
    done
    ;;
esac
`;

describe('the NetworkManager backend, on a stand-in nmcli', () => {
  const path = process.env.PATH;
  let dir: string;
  let manager: NetworkManagerWifi | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fake-nmcli-'));
    writeFileSync(join(dir, 'nmcli'), FAKE_NMCLI, { mode: 0o755 });
    process.env.PATH = `${dir}:${path}`;
  });

  afterEach(async () => {
    await manager?.stop();
    manager = undefined;
    for (const file of ['connect.argv', 'connect.stdin', 'connected']) rmSync(join(dir, file), { force: true });
  });

  afterAll(() => {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  });

  async function connect(network: { ssid: string; passphrase?: string }) {
    const config = wifiConfig({ enabled: true, backend: 'networkmanager', radio: 'wlan0', identities: 1, networks: [network], scanIntervalMs: 60_000 });
    manager = await NetworkManagerWifi.start(config, log);
    await waitFor(`connected to ${network.ssid}`, () => manager!.state().identities[0]?.status === 'connected' || undefined);
    return { argv: readFileSync(join(dir, 'connect.argv'), 'utf8').split('\n').filter(Boolean), stdin: readFileSync(join(dir, 'connect.stdin'), 'utf8') };
  }

  it('gives a WPA passphrase on standard input, never as an argument', async () => {
    const { argv, stdin } = await connect({ ssid: 'home-net', passphrase: PASSPHRASE });
    expect(argv).toEqual(['--ask', '--wait', '15', 'device', 'wifi', 'connect', 'home-net', 'ifname', 'wlan0']);
    expect(argv.join(' ')).not.toContain(PASSPHRASE);
    expect(stdin).toBe(`${PASSPHRASE}\n`);
    expect(manager!.state().identities[0]).toMatchObject({ ssid: 'home-net', trusted: true });
  });

  it('gives nothing for an open network', async () => {
    const { argv, stdin } = await connect({ ssid: 'cafe-open' });
    expect(argv).toEqual(['--wait', '15', 'device', 'wifi', 'connect', 'cafe-open', 'ifname', 'wlan0']);
    expect(stdin).toBe('');
  });
});

describe('the DHCP client’s script', () => {
  it('is 0700: only the agent’s user may run or change it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dhcp-script-'));
    const client = new DhcpClient('wid-none', dir, log);
    try {
      // udhcpc fails on the missing interface; the script is written before it starts.
      client.start(
        () => undefined,
        () => undefined,
      );
      expect((statSync(join(dir, 'udhcpc.script')).mode & 0o777).toString(8)).toBe('700');
    } finally {
      client.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
