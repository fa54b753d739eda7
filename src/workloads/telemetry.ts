/**
 * What the offload policy looks at: CPU load, free memory, battery and temperature from
 * systeminformation, link quality from the WiFi manager, and what is reported from outside —
 * a robot's battery management or mission planner sets battery, charging and mode through the
 * API, and its values win over what this host can measure.
 */
import si from 'systeminformation';
import * as v from 'valibot';
import type { WifiReport } from '../wifi/index.js';
import type { Telemetry } from './policy.js';

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

export class TelemetrySource {
  private reported: ReportedTelemetry = {};

  constructor(private readonly wifi: () => WifiReport) {}

  report(values: ReportedTelemetry): ReportedTelemetry {
    const merged: Record<string, unknown> = { ...this.reported };
    for (const [key, value] of Object.entries(values)) {
      if (value === null) delete merged[key];
      else if (value !== undefined) merged[key] = value;
    }
    this.reported = merged as ReportedTelemetry;
    return this.reported;
  }

  async read(): Promise<Telemetry> {
    const [load, mem, battery, temperature] = await Promise.all([si.currentLoad(), si.mem(), si.battery(), si.cpuTemperature()]);
    const link = linkQuality(this.wifi());
    const measured: Telemetry = {
      cpuLoad: load.currentLoad,
      freeMemoryMiB: mem.available / 1024 ** 2,
      ...(battery.hasBattery ? { battery: battery.percent, charging: battery.isCharging } : {}),
      ...(temperature.main !== null && temperature.main !== undefined && temperature.main > 0 ? { temperature: temperature.main } : {}),
      ...(link !== undefined ? { linkQuality: link } : {}),
    };
    return { ...measured, ...(this.reported as Partial<Telemetry>) };
  }
}
