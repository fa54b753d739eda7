/**
 * Durations counted into fixed buckets, as a Prometheus histogram exposes them. Bounds in
 * seconds, from a virtual device's microseconds over a Modbus TCP gateway's tens of milliseconds
 * to a Bluetooth read near the host's 5 s timeout; few, as each is a line per device per scrape.
 */
import type { Labels, Sample } from './family.js';

export const READ_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5] as const;

export class Buckets {
  /** Observations up to each bound, not cumulative: a cheap increment per observation. */
  private readonly counts = new Array<number>(READ_BUCKETS.length).fill(0);
  private sum = 0;
  private count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    // Past the last bound it counts in `+Inf` only, which is `count`.
    for (let i = 0; i < READ_BUCKETS.length; i++) {
      if (seconds <= READ_BUCKETS[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  /** The `_bucket` (cumulative, with `+Inf`), `_sum` and `_count` samples under `name`. */
  samples(name: string, labels: Labels): Sample[] {
    let cumulative = 0;
    const buckets = READ_BUCKETS.map((bound, i): Sample => {
      cumulative += this.counts[i]!;
      return { metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative };
    });
    return [
      ...buckets,
      { metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: this.count },
      { metricName: `${name}_sum`, labels, value: this.sum },
      { metricName: `${name}_count`, labels, value: this.count },
    ];
  }
}
