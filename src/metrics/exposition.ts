/**
 * Renders metric families in the Prometheus text format with prom-client, loaded at the first
 * scrape: importing it costs 1.5–5 MB of RSS (≈ 11 MB in a bare process), which an agent
 * nobody scrapes should not pay. Its `AggregatorRegistry.aggregate` takes families in the shape
 * of `getMetricsAsJSON()`, which is how they are kept (family.ts).
 */
import type { Family } from './family.js';

let promClient: Promise<typeof import('prom-client')> | undefined;

export interface Exposition {
  text: string;
  contentType: string;
}

export async function expose(families: readonly Family[]): Promise<Exposition> {
  const { AggregatorRegistry } = await (promClient ??= import('prom-client'));
  // One source per family, so `first` hands each family through unchanged.
  const registry = AggregatorRegistry.aggregate([families.map((family) => ({ ...family, aggregator: 'first' }))]);
  return { text: await registry.metrics(), contentType: registry.contentType };
}
