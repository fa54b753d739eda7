/**
 * A metric family as prom-client's `getMetricsAsJSON()` shapes it, built from plain counts at
 * scrape time: the figures are kept without prom-client, which is loaded only to render them.
 */
export type Labels = Record<string, string | number>;

export interface Sample {
  labels: Labels;
  value: number;
  /** For a histogram's `_bucket`, `_sum` and `_count` lines. */
  metricName?: string;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
}

export function counter(name: string, help: string, values: Sample[]): Family {
  return { name, help, type: 'counter', values };
}

export function gauge(name: string, help: string, values: Sample[]): Family {
  return { name, help, type: 'gauge', values };
}

/** One sample per key of `counts`, the key under `label`. */
export function byLabel(label: string, counts: Readonly<Record<string, number>>): Sample[] {
  return Object.entries(counts).map(([key, value]) => ({ labels: { [label]: key }, value }));
}
