/**
 * The WiFi manager's decisions and parsers, on text captured from real tools; the WiFi module
 * and the agent on a host without WiFi (this machine's kernel has none): WiFi reports why, the
 * rest runs. The module is served through the real router; its bus is a recorder.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Router } from '../../src/http/router.js';
import { createLogger } from '../../src/log.js';
import { wifiConfig } from '../../src/wifi/config.js';
import { plan, type Candidate } from '../../src/wifi/planner.js';
import { parseCapabilities, parseStationDump } from '../../src/wifi/radio.js';
import { airtimeScore, parseBssLoad } from '../../src/wifi/scoring.js';
import { channelOf, parseScanResults, pskOf } from '../../src/wifi/station.js';
import { Wifi, type WifiReport } from '../../src/wifi/wifi.js';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';

/** `iw phy phy0 info` of mac80211_hwsim loaded with channels=2 (Debian 6.1 kernel, in the VM testbed). */
const HWSIM_INFO = `Wiphy phy0
\tSupported interface modes:
\t\t * IBSS
\t\t * managed
\t\t * AP
\tvalid interface combinations:
\t\t * #{ IBSS } <= 1, #{ managed, AP, mesh point, P2P-client, P2P-GO } <= 2048, #{ P2P-device } <= 1,
\t\t   total <= 2050, #channels <= 2
\tHT Capability overrides:
\t\t * MCS: ff ff ff ff ff ff ff ff ff ff
`;

/** The shape brcmfmac (Raspberry Pi) reports: one station, one channel. */
const SINGLE_STATION_INFO = `Wiphy phy0
\tSupported interface modes:
\t\t * IBSS
\t\t * managed
\t\t * AP
\t\t * P2P-client
\tvalid interface combinations:
\t\t * #{ managed } <= 1, #{ P2P-device } <= 1, #{ P2P-client, P2P-GO } <= 1,
\t\t   total <= 3, #channels <= 2
\t\t * #{ managed } <= 1, #{ AP } <= 1, #{ P2P-client } <= 1, #{ P2P-device } <= 1,
\t\t   total <= 4, #channels <= 1
\tDevice supports roaming.
`;

describe('radio capabilities', () => {
  it('reads station count and channels from the interface combinations', () => {
    expect(parseCapabilities('phy0', HWSIM_INFO)).toEqual({ phy: 'phy0', stations: 2048, channels: 2 });
    expect(parseCapabilities('phy0', SINGLE_STATION_INFO)).toEqual({ phy: 'phy0', stations: 1, channels: 2 });
  });

  it('refuses a radio without station mode', () => {
    expect(() => parseCapabilities('phy1', 'Wiphy phy1\n\tSupported interface modes:\n\t\t * AP\n')).toThrow(/cannot run station/);
  });
});

describe('wpa_supplicant and iw output', () => {
  it('parses SCAN_RESULTS', () => {
    const reply = 'bssid / frequency / signal level / flags / ssid\n02:00:00:00:01:00\t2437\t-30\t[WPA2-PSK-CCMP][ESS]\tapB\n02:00:00:00:00:00\t2412\t-45\t[ESS]\tapA\n';
    expect(parseScanResults(reply)).toEqual([
      { bssid: '02:00:00:00:01:00', frequency: 2437, signal: -30, security: 'wpa-psk', ssid: 'apB' },
      { bssid: '02:00:00:00:00:00', frequency: 2412, signal: -45, security: 'open', ssid: 'apA' },
    ]);
    expect([2412, 2437, 2484, 5180].map(channelOf)).toEqual([1, 6, 14, 36]);
  });

  it('derives the PSK as wpa_passphrase does (IEEE 802.11i test vector)', () => {
    expect(pskOf('IEEE', 'password')).toBe('f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e');
  });

  it('parses a station dump and a BSS Load element', () => {
    const dump = 'Station 02:00:00:00:00:00 (on wid0)\n\ttx packets:\t120\n\ttx retries:\t30\n\ttx failed:\t2\n\tsignal:  \t-30 [-30] dBm\n\ttx bitrate:\t54.0 MBit/s\n';
    expect(parseStationDump(dump)).toEqual({ txBitrate: 54, txPackets: 120, txRetries: 30, txFailed: 2, signal: -30 });
    expect(parseStationDump('')).toBeUndefined();
    // SSID element, then BSS Load: 3 stations, utilization 200/255, admission capacity 10000.
    expect(parseBssLoad('0003617041' + '0b05' + '0300c81027')).toEqual({ stations: 3, utilization: 200 });
  });
});

describe('airtime score', () => {
  it('prefers the AP that leaves more of the channel, and counts retries as lost airtime', () => {
    const quiet = airtimeScore({ signal: -60, load: { stations: 1, utilization: 25 } });
    const busy = airtimeScore({ signal: -40, load: { stations: 9, utilization: 200 } });
    expect(quiet).toBeGreaterThan(busy);
    const clean = airtimeScore({ signal: -60, stats: { txBitrate: 54, txPackets: 100, txRetries: 0, txFailed: 0, signal: -60 } });
    const lossy = airtimeScore({ signal: -60, stats: { txBitrate: 54, txPackets: 100, txRetries: 100, txFailed: 0, signal: -60 } });
    expect(lossy).toBeCloseTo(clean / 2);
    expect(airtimeScore({ signal: -95 })).toBe(0);
  });
});

describe('planner', () => {
  const ap = (bssid: string, channel: number, score: number, trusted = true): Candidate => ({ bssid, channel, score, trusted });
  const base = { identities: ['wid0', 'wid1'], channels: 2, hysteresis: 0.2, current: new Map<string, string>() };

  it('gives each identity its own AP, the best ones, across the channels the radio can hold', () => {
    const result = plan({ ...base, candidates: [ap('a', 1, 50), ap('b', 6, 40), ap('c', 11, 30)] });
    expect(result).toEqual(new Map([['wid0', 'a'], ['wid1', 'b']]));
  });

  it('keeps a one-channel radio on one channel: the channel whose APs together are best', () => {
    const result = plan({ ...base, channels: 1, candidates: [ap('a', 1, 50), ap('b', 6, 40), ap('c', 6, 40)] });
    expect(new Set(result.values())).toEqual(new Set(['b', 'c']));
  });

  it('does not move for an improvement inside the hysteresis, and moves beyond it', () => {
    const current = new Map([['wid0', 'a'], ['wid1', 'b']]);
    const candidates = (better: number) => [ap('a', 1, 40), ap('b', 1, 40), ap('c', 6, better), ap('d', 6, better)];
    expect(plan({ ...base, channels: 1, current, candidates: candidates(46) })).toEqual(current);
    expect(new Set(plan({ ...base, channels: 1, current, candidates: candidates(60) }).values())).toEqual(new Set(['c', 'd']));
  });

  it('keeps an identity on its AP when that AP stays in the plan', () => {
    const current = new Map([['wid1', 'a']]);
    expect(plan({ ...base, current, candidates: [ap('a', 1, 50), ap('b', 6, 40)] }).get('wid1')).toBe('a');
  });

  it('includes a trusted AP when one is in reach, for sensitive traffic', () => {
    const result = plan({ ...base, candidates: [ap('a', 1, 50, false), ap('b', 6, 45, false), ap('c', 11, 10, true)] });
    expect([...result.values()]).toContain('c');
  });

  it('leaves identities idle when there are fewer APs than identities', () => {
    expect(plan({ ...base, candidates: [ap('a', 1, 50)] })).toEqual(new Map([['wid0', 'a']]));
  });
});

describe('an agent whose WiFi radio is missing', () => {
  let agent: TestAgent;
  beforeAll(async () => {
    const dir = tempDir('wifi-missing-');
    agent = await startTestAgent({ dataDir: dir, config: { runDir: dir, wifi: { enabled: true, radio: 'wlan9' } } });
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('reports why WiFi is not running, and keeps serving everything else', async () => {
    let wifi: { status?: string; error?: string } = {};
    for (let i = 0; i < 50 && wifi.status !== 'failed'; i++) {
      wifi = (await (await agent.api('/api/v1/wifi')).json()) as typeof wifi;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(wifi).toMatchObject({ status: 'failed', error: expect.stringMatching(/no WiFi radio or interface named wlan9/) });
    expect((await fetch(`${agent.apiUrl}/healthz`)).status).toBe(200);
    expect(((await (await agent.api('/api/v1/devices')).json()) as { devices: unknown[] }).devices.length).toBeGreaterThan(0);
  });
});

describe('the WiFi module', () => {
  const log = createLogger('silent');
  const topic = 'edge-agent/node/wifi-test/wifi';

  function module(wifi: Parameters<typeof wifiConfig>[0], subscribed = true) {
    const published: Array<{ topic: string; payload: string }> = [];
    const bus = { wants: (t: string) => subscribed && t === topic, publish: (t: string, payload: string) => void published.push({ topic: t, payload }) };
    return { wifi: new Wifi({ config: wifiConfig(wifi), node: 'wifi-test', runDir: tempDir('wifi-module-'), bus, log }), published };
  }

  const status = (report: WifiReport) => ('status' in report ? report.status : 'running');

  async function until(test: () => boolean): Promise<void> {
    for (let i = 0; i < 50 && !test(); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  let server: Server | undefined;
  afterAll(() => server?.close());

  it('starts nothing in its constructor', async () => {
    const { wifi, published } = module({ enabled: true, radio: 'wlan9' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(wifi.state()).toEqual({ status: 'starting', radio: 'wlan9' });
    expect(published).toEqual([]);
    await wifi.stop();
  });

  it('starts without throwing when the radio is missing, publishes why, and serves it on GET /api/v1/wifi', async () => {
    const { wifi, published } = module({ enabled: true, radio: 'wlan9' });
    await expect(wifi.start(new AbortController().signal)).resolves.toBeUndefined();
    await until(() => status(wifi.state()) === 'failed');
    const failed = wifi.state();
    expect(failed).toMatchObject({ status: 'failed', radio: 'wlan9', error: expect.stringMatching(/no WiFi radio or interface named wlan9/) });
    const waiting = { via: 'none', reason: expect.stringMatching(/^WiFi failed: no WiFi radio or interface named wlan9/) };
    const view = { ...failed, paths: { cloud: waiting, peers: waiting, migration: waiting } };
    expect(published.map((p) => ({ topic: p.topic, payload: JSON.parse(p.payload) as unknown }))).toEqual([{ topic, payload: view }]);

    const router = new Router(wifi.routes, { maxBodyBytes: 1024, log });
    server = createServer((req, res) => void router.serve(req, res, undefined));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const answer = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/wifi`);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual(view);
    await wifi.stop();
  });

  it('publishes only while someone subscribes to the topic', async () => {
    const { wifi, published } = module({ enabled: true, radio: 'wlan9' }, false);
    await wifi.start(new AbortController().signal);
    await until(() => status(wifi.state()) === 'failed');
    expect(status(wifi.state())).toBe('failed');
    await wifi.stop();
    expect(published).toEqual([]);
  });

  it('stays disabled when disabled: no backend, nothing published', async () => {
    const { wifi, published } = module({ enabled: false, radio: 'wlan9' });
    await wifi.start(new AbortController().signal);
    expect(wifi.state()).toEqual({ status: 'disabled', radio: 'wlan9' });
    await wifi.stop();
    expect(published).toEqual([]);
  });
});
