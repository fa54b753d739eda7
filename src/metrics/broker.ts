/** The embedded broker's figures, read from its stats when scraped. */
import type { BrokerStats } from '../bus/embedded.js';
import { counter, gauge, type Family } from './family.js';

export function brokerFamilies(stats: BrokerStats): Family[] {
  return [
    gauge('edge_agent_broker_clients', 'MQTT clients connected to the embedded broker.', [{ labels: {}, value: stats.clients }]),
    counter('edge_agent_broker_messages_received_total', 'Messages MQTT clients published to the embedded broker.', [{ labels: {}, value: stats.received }]),
    counter('edge_agent_broker_messages_published_total', 'Messages the agent published on the embedded broker.', [{ labels: {}, value: stats.published }]),
  ];
}
