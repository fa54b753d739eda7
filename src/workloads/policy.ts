/**
 * When workloads leave for the meta-edge and when they come back (the FLUIDOS robotics
 * requirements): pressure on this gateway — CPU load, free memory, battery, temperature, a device
 * mode such as a robot's mission — sends them out; relief on every count brings them back. A
 * condition must hold for `holdMs` before anything moves, and the thresholds to leave and to come
 * back are apart: no flapping. With a poor link nothing moves, as a migration would crawl.
 */
import type { Telemetry } from '../telemetry/index.js';
import type { PolicyConfig } from './config.js';

export type Verdict = 'out' | 'back' | 'stay';

export interface Decision {
  verdict: Verdict;
  /** Why: the conditions that pressed, or why nothing moves. */
  reasons: string[];
  at: string;
}

/** What presses the gateway now, by the `out` thresholds of the rules in use. */
export function pressures(t: Telemetry, c: PolicyConfig): string[] {
  const reasons: string[] = [];
  if (c.cpuLoad && t.cpuLoad >= c.cpuLoad.out) reasons.push(`CPU load ${t.cpuLoad.toFixed(0)} % ≥ ${c.cpuLoad.out} %`);
  if (c.freeMemoryMiB && t.freeMemoryMiB <= c.freeMemoryMiB.out) reasons.push(`free memory ${t.freeMemoryMiB.toFixed(0)} MiB ≤ ${c.freeMemoryMiB.out} MiB`);
  if (c.battery && t.battery !== undefined && !t.charging && t.battery <= c.battery.out) reasons.push(`battery ${t.battery} % ≤ ${c.battery.out} % and not charging`);
  if (c.temperature && t.temperature !== undefined && t.temperature >= c.temperature.out) reasons.push(`temperature ${t.temperature} °C ≥ ${c.temperature.out} °C`);
  if (t.mode !== undefined && c.offloadModes.includes(t.mode)) reasons.push(`mode ${t.mode}`);
  return reasons;
}

/** Whether every rule in use is clear of its `back` threshold (further than the `out` one). */
export function relieved(t: Telemetry, c: PolicyConfig): boolean {
  return (
    (!c.cpuLoad || t.cpuLoad <= c.cpuLoad.back) &&
    (!c.freeMemoryMiB || t.freeMemoryMiB >= c.freeMemoryMiB.back) &&
    (!c.battery || t.battery === undefined || t.charging === true || t.battery >= c.battery.back) &&
    (!c.temperature || t.temperature === undefined || t.temperature <= c.temperature.back) &&
    !(t.mode !== undefined && c.offloadModes.includes(t.mode))
  );
}

/** The policy's memory between evaluations: since when the current leaning has held. */
export class OffloadPolicy {
  private leaning: Verdict = 'stay';
  private since = 0;

  constructor(private readonly config: PolicyConfig) {}

  /** `away`: whether workloads are out at the target now; `now` is monotonic (performance.now()), for the hold time, and `at` stamps the decision. */
  evaluate(t: Telemetry, away: boolean, now = performance.now()): Decision {
    const at = new Date().toISOString();
    if (t.linkQuality !== undefined && t.linkQuality < this.config.linkQuality.min) {
      this.leaning = 'stay';
      return { verdict: 'stay', reasons: [`link quality ${t.linkQuality} < ${this.config.linkQuality.min}: nothing moves`], at };
    }
    const pressing = pressures(t, this.config);
    const leaning: Verdict = !away && pressing.length > 0 ? 'out' : away && relieved(t, this.config) ? 'back' : 'stay';
    if (leaning !== this.leaning) {
      this.leaning = leaning;
      this.since = now;
    }
    const reasons = leaning === 'back' ? ['every condition below its threshold to come back'] : pressing;
    if (leaning === 'stay') return { verdict: 'stay', reasons, at };
    const held = Math.round(now - this.since);
    if (held < this.config.holdMs) return { verdict: 'stay', reasons: [...reasons, `held ${held} ms of ${this.config.holdMs} ms`], at };
    this.since = now;
    return { verdict: leaning, reasons, at };
  }
}
