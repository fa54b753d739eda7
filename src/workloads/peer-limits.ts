/**
 * What keeps a flood off the peer endpoint, per remote address: a token bucket for TLS handshakes
 * (a connection over the limit is cut before any cryptography), and a log of refusals that writes
 * at most one line per address per interval, counting the refusals it stands for. An IPv6
 * address counts as its /64: one host is commonly given a whole /64, and could otherwise take a
 * fresh address, and a fresh bucket, for every connection.
 */
import type { Logger } from '../log.js';
import { TokenBucket } from '../rate-limit.js';

/** Addresses remembered at most; past that, those with nothing left to remember are forgotten. */
const MAX_ADDRESSES = 10_000;

export interface HandshakeLimits {
  /** Handshakes an address may start at once. */
  burst: number;
  /** Handshakes it may start per second after that. */
  perSecond: number;
}

export class HandshakeLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(private readonly limits: HandshakeLimits) {}

  /** Whether `address` may start a handshake now; if so, it is counted. */
  admit(address: string, now = performance.now()): boolean {
    const key = limitedAs(address);
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new TokenBucket(this.limits.burst, this.limits.perSecond, now)));
    const admitted = bucket.take(now);
    if (this.buckets.size > MAX_ADDRESSES) {
      // A full bucket is what an address never seen gets: forgetting it changes nothing.
      forget(this.buckets, (b) => b.full(now));
      trimOldest(this.buckets);
    }
    return admitted;
  }
}

export class PeerRefusalLog {
  /** Per address: when its last line was written, the refusals since that no line has counted, and the latest one's reason. */
  private readonly addresses = new Map<string, { loggedAt: number; unlogged: number; reason: string }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  /** Writes a line for this refusal, or, within the interval after the address's last line, counts it towards the next. */
  refused(address: string, reason: string, detail: Record<string, unknown> = {}, now = performance.now()): void {
    const key = limitedAs(address);
    const seen = this.addresses.get(key);
    if (seen && now - seen.loggedAt < this.intervalMs) {
      seen.unlogged++;
      seen.reason = reason;
      return;
    }
    this.write(address, (seen?.unlogged ?? 0) + 1, reason, detail);
    this.addresses.set(key, { loggedAt: now, unlogged: 0, reason });
    if (this.addresses.size > MAX_ADDRESSES) {
      // Forgetting an address whose interval is over loses nothing once what it still counted is written.
      for (const [stale, seen] of this.addresses) {
        if (now - seen.loggedAt < this.intervalMs) continue;
        if (seen.unlogged > 0) this.write(stale, seen.unlogged, seen.reason, {});
        this.addresses.delete(stale);
      }
      // Still too many (refusals from as many networks within one interval): the oldest go uncounted.
      trimOldest(this.addresses);
    }
  }

  /** One line standing for `refusals` refusals from `address`, the latest for `reason`. */
  private write(address: string, refusals: number, reason: string, detail: Record<string, unknown>): void {
    this.log.warn({ remote: address, refusals, ...detail }, `refused a peer connection: ${reason}`);
  }
}

/** What an address is limited as: an IPv4 address itself (also written IPv4-mapped), an IPv6 address its /64. */
export function limitedAs(address: string): string {
  const unzoned = address.split('%')[0]!;
  if (!unzoned.includes(':')) return unzoned;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(unzoned);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = unzoned.split('::');
  const groups = head ? head.split(':') : [];
  if (tail !== undefined) {
    // `::` stands for as many zero groups as the rest leaves out of eight; only the first four matter.
    const after = tail ? tail.split(':') : [];
    groups.push(...Array<string>(Math.max(0, 8 - groups.length - after.length)).fill('0'), ...after);
  }
  return `${groups
    .slice(0, 4)
    .map((group) => parseInt(group, 16).toString(16))
    .join(':')}::/64`;
}

function forget<T>(map: Map<string, T>, forgettable: (value: T) => boolean): void {
  for (const [key, value] of map) if (forgettable(value)) map.delete(key);
}

/**
 * Past MAX_ADDRESSES (a flood from as many networks), the oldest entries go, so memory stays
 * bounded, and a tenth more, so the scan that leads here runs once per thousand new networks, not for each.
 */
function trimOldest<T>(map: Map<string, T>): void {
  for (const oldest of map.keys()) {
    if (map.size <= MAX_ADDRESSES * 0.9) break;
    map.delete(oldest);
  }
}
