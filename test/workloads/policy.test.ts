/** The offload policy's decisions over telemetry: thresholds apart, a hold time, a poor link. */
import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import type { Telemetry } from '../../src/telemetry/index.js';
import { workloadsSection } from '../../src/workloads/config.js';
import { OffloadPolicy } from '../../src/workloads/policy.js';

const config = v.parse(workloadsSection, { policy: { holdMs: 1000 } }).policy;
const calm: Telemetry = { cpuLoad: 20, freeMemoryMiB: 512, battery: 90, charging: false, temperature: 50 };

describe('the offload policy', () => {
  it('leaves only after the pressure held for holdMs, naming it', () => {
    const policy = new OffloadPolicy(config);
    const low = { ...calm, battery: 15 };
    expect(policy.evaluate(low, false, 0).verdict).toBe('stay');
    expect(policy.evaluate(low, false, 500).verdict).toBe('stay');
    const decision = policy.evaluate(low, false, 1000);
    expect(decision.verdict).toBe('out');
    expect(decision.reasons).toEqual(['battery 15 % ≤ 20 % and not charging']);
  });

  it('does not leave on a battery that charges, and names every pressing condition', () => {
    const policy = new OffloadPolicy(config);
    expect(policy.evaluate({ ...calm, battery: 5, charging: true }, false, 0).reasons).toEqual([]);
    const hot = policy.evaluate({ ...calm, cpuLoad: 95, freeMemoryMiB: 32, temperature: 85, mode: 'mission' }, false, 0);
    expect(hot.reasons).toEqual(['CPU load 95 % ≥ 90 %', 'free memory 32 MiB ≤ 64 MiB', 'temperature 85 °C ≥ 80 °C', 'mode mission', 'held 0 ms of 1000 ms']);
  });

  it('comes back only once every condition is past its threshold to come back: no flapping between them', () => {
    const policy = new OffloadPolicy(config);
    // Away, battery between 20 (out) and 40 (back): stays away however long.
    for (let t = 0; t <= 5000; t += 500) expect(policy.evaluate({ ...calm, battery: 30 }, true, t).verdict).toBe('stay');
    expect(policy.evaluate({ ...calm, battery: 45 }, true, 6000).verdict).toBe('stay');
    expect(policy.evaluate({ ...calm, battery: 45 }, true, 7000).verdict).toBe('back');
    // A pressure that comes and goes within the hold time moves nothing.
    expect(policy.evaluate({ ...calm, cpuLoad: 95 }, false, 8000).verdict).toBe('stay');
    expect(policy.evaluate(calm, false, 8500).verdict).toBe('stay');
    expect(policy.evaluate({ ...calm, cpuLoad: 95 }, false, 9000).verdict).toBe('stay');
  });

  it('moves nothing over a poor link', () => {
    const policy = new OffloadPolicy(config);
    const decision = policy.evaluate({ ...calm, battery: 5, linkQuality: 10 }, false, 5000);
    expect(decision).toMatchObject({ verdict: 'stay', reasons: ['link quality 10 < 30: nothing moves'] });
  });
});
