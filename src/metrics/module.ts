/**
 * `GET /metrics`: the agent's figures in the Prometheus text format. Counts that must be taken
 * as events happen (mapper reads, transport requests, twin updates) are plain increments kept
 * here; the rest is read from the modules' own status when scraped, so no module imports this.
 */
import { Readable } from 'node:stream';
import type { BrokerStats } from '../bus/embedded.js';
import { Streamed, type Route } from '../http/router.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { Twins } from '../twin/twins.js';
import type { WifiReport } from '../wifi/wifi.js';
import { brokerFamilies } from './broker.js';
import { cloudFamilies, type CloudFigures } from './cloud.js';
import { expose } from './exposition.js';
import type { Family } from './family.js';
import type { MapperReads } from './mapper-reads.js';
import { TwinUpdates } from './twin-updates.js';
import { wifiFamilies } from './wifi.js';
import { workloadsFamilies, type WorkloadsView } from './workloads.js';

export const METRICS_PATH = '/metrics';

export interface MetricsSources {
  twins: Twins;
  /** The observer the mapper host was given. */
  mappers: MapperReads;
  /** The embedded broker's stats; none with an external broker. */
  broker?: () => BrokerStats;
  /** The cloud module's status, when the link is enabled. */
  cloud?: () => CloudFigures;
  wifi: () => WifiReport;
  /** When workloads are enabled. */
  workloads?: WorkloadsView;
  log: Logger;
}

export class MetricsModule implements Module {
  readonly name = MODULE.metrics;
  readonly routes: readonly Route[] = [{ method: 'GET', path: METRICS_PATH, handle: () => this.scrape() }];
  private readonly twinUpdates = new TwinUpdates();
  private removers: Remove[] = [];

  constructor(private readonly sources: MetricsSources) {}

  async start(): Promise<void> {
    this.removers = [this.twinUpdates.listen(this.sources.twins)];
  }

  async stop(): Promise<void> {
    for (const remove of this.removers.splice(0)) remove();
  }

  private async scrape(): Promise<Streamed> {
    const { text, contentType } = await expose(await this.families());
    return new Streamed(Readable.from([text]), Buffer.byteLength(text), contentType);
  }

  private async families(): Promise<Family[]> {
    const { mappers, broker, cloud, wifi, workloads, log } = this.sources;
    return [
      ...mappers.families(),
      ...this.twinUpdates.families(),
      ...(broker ? brokerFamilies(broker()) : []),
      ...(cloud ? cloudFamilies(cloud()) : []),
      ...wifiFamilies(wifi()),
      // Workloads not started (503) leave their families out; the others are still served.
      ...(workloads
        ? await workloadsFamilies(workloads).catch((error: unknown) => {
            log.warn({ err: (error as Error).message }, 'workload metrics unavailable');
            return [];
          })
        : []),
    ];
  }
}
