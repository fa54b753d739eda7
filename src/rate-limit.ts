/** A token bucket on the monotonic clock: bursts of `burst` calls, `perSecond` a second after that. */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Whether one more call may go now; if so, it is counted. */
  take(now = performance.now()): boolean {
    this.tokens = this.level(now);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether it has refilled: a full bucket is what one never used would be. */
  full(now = performance.now()): boolean {
    return this.level(now) >= this.burst;
  }

  private level(now: number): number {
    return Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
  }
}
