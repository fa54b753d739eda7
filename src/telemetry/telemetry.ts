/**
 * The telemetry module: one systeminformation sampler for whatever asks how this host is doing.
 * - The offload policy reads CPU load, free memory, battery and temperature, link quality from
 *   the WiFi module, and what is reported from outside: a robot's battery management or mission
 *   planner sets battery, charging and mode through the API, and its values win over what this
 *   host can measure.
 * - The cloud link reads the host's facts (CPUs, memory, OS, addresses) for its v1.Node.
 * Samples are taken when asked: nothing runs between reads. systeminformation is loaded on the
 * first read, as it costs ~11 MB resident and an agent without cloud link or workloads never asks.
 */
import { networkInterfaces } from 'node:os';
import * as v from 'valibot';
import type { Logger } from '../log.js';
import { MODULE, type Module } from '../module.js';
import type { WifiReport } from '../wifi/wifi.js';

/** What the offload policy decides on. */
export interface Telemetry {
  /** CPU load, percent of all cores. */
  cpuLoad: number;
  freeMemoryMiB: number;
  /** Battery percent; absent on mains power. */
  battery?: number;
  charging?: boolean;
  /** Hottest CPU sensor, °C. */
  temperature?: number;
  /** 0–100, from the WiFi module or reported; absent on a wired link. */
  linkQuality?: number;
  /** Set by an operator or the robot itself: `mission`, `idle`, `charging`, … */
  mode?: string;
}

/** `null` clears a reported value: the measured one counts again. */
export const reportedTelemetry = v.strictObject({
  cpuLoad: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(100)))),
  freeMemoryMiB: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0)))),
  battery: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(100)))),
  charging: v.optional(v.nullable(v.boolean())),
  temperature: v.optional(v.nullable(v.number())),
  linkQuality: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(100)))),
  mode: v.optional(v.nullable(v.pipe(v.string(), v.minLength(1)))),
});
export type ReportedTelemetry = v.InferOutput<typeof reportedTelemetry>;

/** What this host is: read once, except the addresses, which are read on every call (DHCP moves them). */
export interface HostFacts {
  /** As Node names it: `x64`, `arm64`, `arm`, `ia32`, … */
  arch: string;
  kernel: string;
  /** `Debian GNU/Linux`, `12`, `bookworm` (empty when the distribution names none). */
  distro: string;
  release: string;
  codename: string;
  /** /etc/machine-id. */
  machineId: string;
  /** Logical CPUs. */
  cpus: number;
  memoryBytes: number;
  /** The first IPv4 address of each interface other than loopback. */
  addresses: string[];
}

export interface TelemetryDeps {
  /** Link quality comes from the WiFi module's state. */
  wifi: { state(): WifiReport };
  log: Logger;
}

type Systeminformation = typeof import('systeminformation');
type Measured = Omit<Telemetry, 'linkQuality' | 'mode'>;

/** dBm to 0–100 the way NetworkManager shows signal: -100 dBm is 0, -50 dBm and better 100. */
function quality(dbm: number): number {
  return Math.max(0, Math.min(100, 2 * (dbm + 100)));
}

/** The best link among the WiFi identities that are connected, if WiFi is in use. */
function linkQuality(wifi: WifiReport): number | undefined {
  if (!('identities' in wifi)) return undefined;
  const signals = wifi.identities.filter((i) => i.status === 'connected' && i.signal !== undefined).map((i) => quality(i.signal!));
  return signals.length > 0 ? Math.max(...signals) : undefined;
}

/** systeminformation's `ip4` of each interface, taken as it takes it but without its per-interface shell commands. */
function ipv4Addresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((entries) => {
    if (!entries || entries[0]?.internal) return [];
    const ip4 = entries.find((e) => e.family === 'IPv4');
    return ip4 ? [ip4.address] : [];
  });
}

export class TelemetryModule implements Module {
  readonly name = MODULE.telemetry;
  private reported: ReportedTelemetry = {};
  private library: Promise<Systeminformation> | undefined;
  /** A sample under way: callers at the same time share it. */
  private sampling: Promise<Measured> | undefined;
  private facts: Promise<Omit<HostFacts, 'addresses'>> | undefined;
  private readonly log: Logger;

  constructor(private readonly deps: TelemetryDeps) {
    this.log = deps.log.child({ module: MODULE.telemetry });
  }

  /** Nothing to start: samples are taken when asked. */
  async start(_signal: AbortSignal): Promise<void> {}

  async stop(): Promise<void> {}

  /** Merges reported values over the earlier ones; `null` clears one. Returns all reported values now in force. */
  report(values: ReportedTelemetry): ReportedTelemetry {
    const merged: Record<string, unknown> = { ...this.reported };
    for (const [key, value] of Object.entries(values)) {
      if (value === null) delete merged[key];
      else if (value !== undefined) merged[key] = value;
    }
    this.reported = merged as ReportedTelemetry;
    return this.reported;
  }

  /** Measured now, with the reported values over the measured ones. */
  async read(): Promise<Telemetry> {
    const measured = await (this.sampling ??= this.sample().finally(() => (this.sampling = undefined)));
    const link = linkQuality(this.deps.wifi.state());
    return { ...measured, ...(link !== undefined ? { linkQuality: link } : {}), ...(this.reported as Partial<Telemetry>) };
  }

  /** The host's facts; all but the addresses are read once and kept (a failed read is retried on the next call). */
  async host(): Promise<HostFacts> {
    this.facts ??= this.readFacts().catch((error: unknown) => {
      this.facts = undefined;
      throw error;
    });
    return { ...(await this.facts), addresses: ipv4Addresses() };
  }

  private si(): Promise<Systeminformation> {
    return (this.library ??= import('systeminformation').then((m) => m.default));
  }

  private async sample(): Promise<Measured> {
    const si = await this.si();
    const [load, mem, battery, temperature] = await Promise.all([si.currentLoad(), si.mem(), si.battery(), si.cpuTemperature()]);
    return {
      cpuLoad: load.currentLoad,
      freeMemoryMiB: mem.available / 1024 ** 2,
      ...(battery.hasBattery ? { battery: battery.percent, charging: battery.isCharging } : {}),
      ...(temperature.main !== null && temperature.main !== undefined && temperature.main > 0 ? { temperature: temperature.main } : {}),
    };
  }

  private async readFacts(): Promise<Omit<HostFacts, 'addresses'>> {
    const si = await this.si();
    const [os, mem, cpu, uuid] = await Promise.all([si.osInfo(), si.mem(), si.cpu(), si.uuid()]);
    const facts = { arch: os.arch, kernel: os.kernel, distro: os.distro, release: os.release, codename: os.codename ?? '', machineId: uuid.os, cpus: cpu.cores, memoryBytes: mem.total };
    this.log.debug(facts, 'host facts read');
    return facts;
  }
}
