/** The WiFi identities, their signal and score, read from the WiFi module's state when scraped. */
import type { IdentityState, IdentityStatus } from '../wifi/state.js';
import type { WifiReport } from '../wifi/wifi.js';
import { byLabel, gauge, type Family } from './family.js';

export function wifiFamilies(report: WifiReport): Family[] {
  // disabled, starting or failed: no identities to tell about.
  if (!('identities' in report)) return [];
  const { identities } = report;
  const byStatus: Record<IdentityStatus, number> = { idle: 0, connecting: 0, connected: 0, failed: 0 };
  for (const identity of identities) byStatus[identity.status]++;
  const each = (pick: (identity: IdentityState) => number | undefined) =>
    identities.flatMap((identity) => {
      const value = pick(identity);
      return value === undefined ? [] : [{ labels: { identity: identity.name }, value }];
    });
  return [
    gauge('edge_agent_wifi_identities', 'WiFi identities, by status.', byLabel('status', byStatus)),
    gauge('edge_agent_wifi_identity_connected', '1 while the identity is associated.', each((identity) => (identity.status === 'connected' ? 1 : 0))),
    gauge('edge_agent_wifi_identity_signal_dbm', "Signal of the identity's AP, dBm.", each((identity) => identity.signal)),
    gauge('edge_agent_wifi_identity_score_mbps', "The identity's useful airtime as scored, Mbit/s.", each((identity) => identity.score)),
  ];
}
