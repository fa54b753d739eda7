/**
 * What keeps a flood off the peer endpoint, per remote address: a token bucket for TLS handshakes
 * (a connection over the limit is cut before any cryptography), and a log of refusals that writes
 * at most one line per address per interval, counting the refusals it stands for.
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
    let bucket = this.buckets.get(address);
    if (!bucket) this.buckets.set(address, (bucket = new TokenBucket(this.limits.burst, this.limits.perSecond, now)));
    const admitted = bucket.take(now);
    // A full bucket is what an address never seen gets: forgetting it changes nothing.
    if (this.buckets.size > MAX_ADDRESSES) forget(this.buckets, (b) => b.full(now));
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
    const seen = this.addresses.get(address);
    if (seen && now - seen.loggedAt < this.intervalMs) {
      seen.unlogged++;
      seen.reason = reason;
      return;
    }
    this.write(address, (seen?.unlogged ?? 0) + 1, reason, detail);
    this.addresses.set(address, { loggedAt: now, unlogged: 0, reason });
    if (this.addresses.size > MAX_ADDRESSES) {
      // Forgetting an address whose interval is over loses nothing once what it still counted is written.
      for (const [stale, seen] of this.addresses) {
        if (now - seen.loggedAt < this.intervalMs) continue;
        if (seen.unlogged > 0) this.write(stale, seen.unlogged, seen.reason, {});
        this.addresses.delete(stale);
      }
    }
  }

  /** One line standing for `refusals` refusals from `address`, the latest for `reason`. */
  private write(address: string, refusals: number, reason: string, detail: Record<string, unknown>): void {
    this.log.warn({ remote: address, refusals, ...detail }, `refused a peer connection: ${reason}`);
  }
}

function forget<T>(map: Map<string, T>, forgettable: (value: T) => boolean): void {
  for (const [key, value] of map) if (forgettable(value)) map.delete(key);
}
