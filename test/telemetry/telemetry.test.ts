/**
 * The telemetry module on this host's real systeminformation: reported values over measured
 * ones (null clears one), link quality from the WiFi state, and the host facts the cloud node
 * is built from. The WiFi module is a stand-in state; systeminformation is only watched.
 */
import { cpus, networkInterfaces, totalmem } from 'node:os';
import si from 'systeminformation';
import * as v from 'valibot';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { nodeFacts } from '../../src/cloud/node.js';
import { createLogger } from '../../src/log.js';
import { reportedTelemetry, TelemetryModule } from '../../src/telemetry/index.js';
import type { IdentityState } from '../../src/wifi/state.js';
import type { WifiReport } from '../../src/wifi/wifi.js';

const log = createLogger('silent');

function telemetry(initial: WifiReport = { status: 'disabled', radio: 'wlan0' }) {
  const wifi = { report: initial, state: () => wifi.report };
  return { module: new TelemetryModule({ wifi, log }), wifi };
}

function identity(name: string, status: IdentityState['status'], signal: number): IdentityState {
  return { name, mac: '02:00:00:00:00:01', status, signal };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('reported telemetry', () => {
  it('goes over the measured values, keeps earlier reports, and null gives the measured value back', async () => {
    const { module } = telemetry();
    await module.start(new AbortController().signal);
    const measured = await module.read();
    expect(measured.cpuLoad).toBeGreaterThanOrEqual(0);
    expect(measured.cpuLoad).toBeLessThanOrEqual(100);
    expect(measured.freeMemoryMiB).toBeGreaterThan(1);

    expect(module.report({ battery: 12, charging: false, mode: 'mission', freeMemoryMiB: 1 })).toEqual({ battery: 12, charging: false, mode: 'mission', freeMemoryMiB: 1 });
    expect(await module.read()).toMatchObject({ battery: 12, charging: false, mode: 'mission', freeMemoryMiB: 1 });

    // Absent and undefined keys leave a report alone.
    expect(module.report({ battery: 30, mode: undefined })).toEqual({ battery: 30, charging: false, mode: 'mission', freeMemoryMiB: 1 });

    expect(module.report({ mode: null, freeMemoryMiB: null, battery: null })).toEqual({ charging: false });
    const cleared = await module.read();
    expect(cleared.mode).toBeUndefined();
    expect(cleared.battery).toBe(measured.battery);
    expect(cleared.freeMemoryMiB).toBeGreaterThan(1);
    expect(cleared.charging).toBe(false);
    await module.stop();
  });

  it('is parsed by one schema: null clears, out of range and unknown keys are refused', () => {
    expect(v.parse(reportedTelemetry, { battery: null, mode: 'idle' })).toEqual({ battery: null, mode: 'idle' });
    expect(v.safeParse(reportedTelemetry, { battery: 101 }).success).toBe(false);
    expect(v.safeParse(reportedTelemetry, { mode: '' }).success).toBe(false);
    expect(v.safeParse(reportedTelemetry, { voltage: 12 }).success).toBe(false);
  });
});

describe('link quality', () => {
  const state = (identities: IdentityState[]): WifiReport => ({ backend: 'wpa_supplicant', radio: 'phy0', channelCapacity: 2, channels: [1], identities, aps: [] });

  it('is the best connected identity, from the WiFi state at each read; a reported one wins until cleared', async () => {
    const { module, wifi } = telemetry(state([identity('wid0', 'connected', -80), identity('wid1', 'connected', -60), identity('wid2', 'idle', -30)]));
    expect((await module.read()).linkQuality).toBe(80);
    wifi.report = state([identity('wid0', 'connected', -80)]);
    expect((await module.read()).linkQuality).toBe(40);
    module.report({ linkQuality: 10 });
    expect((await module.read()).linkQuality).toBe(10);
    module.report({ linkQuality: null });
    expect((await module.read()).linkQuality).toBe(40);
    wifi.report = { status: 'failed', radio: 'wlan0', error: 'no radio' };
    expect((await module.read()).linkQuality).toBeUndefined();
  });
});

describe('host facts', () => {
  const addresses = () =>
    Object.values(networkInterfaces()).flatMap((entries) => (entries && !entries[0]?.internal ? entries.filter((e) => e.family === 'IPv4').slice(0, 1).map((e) => e.address) : []));

  it('are read from systeminformation once; the addresses every time', async () => {
    const osInfo = vi.spyOn(si, 'osInfo');
    const { module } = telemetry();
    const [first, second] = await Promise.all([module.host(), module.host()]);
    const third = await module.host();
    expect(osInfo).toHaveBeenCalledTimes(1);
    expect(second).toEqual(first);
    expect(third).toEqual(first);
    expect(first.arch).toBe(process.arch);
    expect(first.cpus).toBe(cpus().length);
    expect(first.memoryBytes / totalmem()).toBeCloseTo(1, 1);
    expect(first.kernel).not.toBe('');
    expect(first.addresses).toEqual(addresses());
  });

  it('make the cloud node: Kubernetes architecture, memory in Ki, addresses and the hostname', async () => {
    const { module } = telemetry();
    const host = await module.host();
    const facts = await nodeFacts('edge-1', module);
    expect(facts).toEqual({
      architecture: ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' } as Record<string, string>)[host.arch] ?? host.arch,
      kernelVersion: host.kernel,
      osImage: expect.stringContaining(host.distro),
      machineID: host.machineId,
      cpu: String(cpus().length),
      memory: `${Math.floor(host.memoryBytes / 1024)}Ki`,
      addresses: [...addresses().map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: 'edge-1' }],
    });
  });
});
