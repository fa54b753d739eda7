/** Counts committed twin updates by where they came from, through the twin's own `onChange`. */
import type { Remove } from '../module.js';
import type { Origin, Twins } from '../twin/twins.js';
import { byLabel, counter, type Family } from './family.js';

export class TwinUpdates {
  /** Every origin from the start, so a rate over a quiet one is 0 rather than missing. */
  private readonly counts: Record<Origin, number> = { mqtt: 0, api: 0, mapper: 0, manifest: 0, cloud: 0 };

  /** One increment per committed change: the whole cost on the twin's ingest path. */
  listen(twins: Twins): Remove {
    return twins.onChange((change) => {
      this.counts[change.origin]++;
    });
  }

  families(): Family[] {
    return [counter('edge_agent_twin_updates_total', 'Committed twin updates, by origin (mqtt, api, mapper, manifest, cloud).', byLabel('origin', this.counts))];
  }
}
