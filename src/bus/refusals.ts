/**
 * The broker's refusals in the log, at most `perWindow` lines per window: a client retrying a
 * refused login, or a flood of forbidden publishes, must not flood the log. The next line after
 * a quiet-down says how many were left out.
 */
import type { Logger } from '../log.js';

const PER_WINDOW = 20;
const WINDOW_MS = 10_000;

export class RefusalLog {
  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private leftOut = 0;

  constructor(
    private readonly log: Logger,
    private readonly perWindow = PER_WINDOW,
    private readonly windowMs = WINDOW_MS,
  ) {}

  refused(fields: Record<string, unknown>, message: string): void {
    // Monotonic: a wall-clock step back must not silence the log for as long as the step.
    const now = performance.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow++ >= this.perWindow) {
      this.leftOut++;
      return;
    }
    const leftOut = this.leftOut;
    this.leftOut = 0;
    this.log.warn(leftOut > 0 ? { ...fields, refusalsNotLogged: leftOut } : fields, message);
  }
}
