/**
 * Which topic filters connected clients subscribe to, so the embedded broker can skip building
 * and routing a publish nobody receives. Results are QoS 0, which aedes never queues for
 * offline clients, so only connected clients' subscriptions matter.
 */
import { topicFilter } from './bus.js';

const CACHE_LIMIT = 10_000;

export class SubscriberIndex<Client extends object> {
  private readonly byClient = new Map<Client, Set<string>>();
  private readonly matchers = new Map<string, { count: number; matches: (topic: string) => boolean }>();
  private readonly cache = new Map<string, boolean>();

  subscribe(client: Client, filters: string[]): void {
    const own = this.byClient.get(client) ?? new Set<string>();
    this.byClient.set(client, own);
    for (const filter of filters) {
      if (own.has(filter)) continue;
      own.add(filter);
      const entry = this.matchers.get(filter);
      if (entry) entry.count++;
      else this.matchers.set(filter, { count: 1, matches: topicFilter(filter) });
    }
    this.cache.clear();
  }

  unsubscribe(client: Client, filters: string[]): void {
    const own = this.byClient.get(client);
    if (!own) return;
    for (const filter of filters) {
      if (!own.delete(filter)) continue;
      const entry = this.matchers.get(filter)!;
      if (--entry.count === 0) this.matchers.delete(filter);
    }
    if (own.size === 0) this.byClient.delete(client);
    this.cache.clear();
  }

  disconnect(client: Client): void {
    const own = this.byClient.get(client);
    if (own) this.unsubscribe(client, [...own]);
  }

  hasSubscriber(topic: string): boolean {
    const cached = this.cache.get(topic);
    if (cached !== undefined) return cached;
    let found = false;
    for (const { matches } of this.matchers.values()) {
      if (matches(topic)) {
        found = true;
        break;
      }
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(topic, found);
    return found;
  }
}
