/** What the cloud received of a device's reports, as tests count them. */
import type { BeehiveMessage } from '../../../src/cloud/message.js';
import type { MsgTwin } from '../../../src/twin/types.js';

/** Every edge version of `property` in the twin reports on `resource`, each message once: redeliveries (same msg_id) apart. */
export function reportedVersions(received: readonly BeehiveMessage[], resource: string, property: string): { versions: number[]; redelivered: number } {
  const seen = new Set<string>();
  const versions: number[] = [];
  let redelivered = 0;
  for (const message of received) {
    if (message.route.resource !== resource) continue;
    if (seen.has(message.header.msg_id)) {
      redelivered++;
      continue;
    }
    seen.add(message.header.msg_id);
    const version = (message.content as { twin: Record<string, MsgTwin> }).twin[property]?.actual_version?.edge;
    if (version !== undefined) versions.push(version);
  }
  return { versions, redelivered };
}
