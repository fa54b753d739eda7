/** The cloud link's state and its outbox, read from the cloud module's status when scraped. */
import type { LinkStatus } from '../cloud/link.js';
import type { CloudStatus } from '../cloud/edgehub.js';
import { counter, gauge, type Family } from './family.js';

/** What is read of `EdgeHub.status()`: the rest of it (stored objects) is not a figure. */
export interface CloudFigures {
  link: Pick<LinkStatus, 'connected' | 'connects'>;
  outbox: CloudStatus['outbox'];
}

const one = (value: number) => [{ labels: {}, value }];

export function cloudFamilies({ link, outbox }: CloudFigures): Family[] {
  return [
    gauge('edge_agent_cloud_connected', '1 while the link to CloudCore is up.', one(link.connected ? 1 : 0)),
    // `connects` counts every connection; all but the first are reconnects.
    counter('edge_agent_cloud_reconnects_total', 'Connections to CloudCore made again after the first.', one(Math.max(0, link.connects - 1))),
    gauge('edge_agent_cloud_outbox_reports', 'Reports queued for the cloud, in flight or not.', one(outbox.queued)),
    gauge('edge_agent_cloud_outbox_bytes', 'Bytes the queued reports take.', one(outbox.bytes)),
    gauge('edge_agent_cloud_outbox_in_flight', 'Reports sent and not answered yet.', one(outbox.inFlight)),
    gauge('edge_agent_cloud_outbox_oldest_age_seconds', 'Age of the oldest queued report (0 when none is queued).', one((outbox.oldestAgeMs ?? 0) / 1000)),
    counter('edge_agent_cloud_outbox_resent_total', 'Sends of reports the cloud had not answered in time.', one(outbox.resent)),
    counter('edge_agent_cloud_outbox_dropped_total', 'Reports dropped for room.', one(outbox.dropped)),
    counter('edge_agent_cloud_outbox_coalesced_total', 'Reports merged into a newer one of the same key.', one(outbox.coalesced)),
  ];
}
