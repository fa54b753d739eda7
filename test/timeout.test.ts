import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { atWallClock, timedOut, withTimeout } from '../src/timeout.js';

const DAY = 24 * 3600 * 1000;

beforeEach(() => vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') }));
afterEach(() => vi.useRealTimers());

describe('atWallClock', () => {
  it('waits longer than one timer can (a one-year certificate rotates at ~80 % of its life, not after 24.8 days)', () => {
    const run = vi.fn();
    atWallClock(Date.now() + 292 * DAY, run);
    vi.advanceTimersByTime(25 * DAY);
    expect(run).not.toHaveBeenCalled();
    vi.advanceTimersByTime(267 * DAY - 1);
    expect(run).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(run).toHaveBeenCalledOnce();
  });

  it('measures the wait again after the wall clock steps forward', () => {
    const run = vi.fn();
    atWallClock(Date.now() + 100 * DAY, run);
    vi.setSystemTime(Date.now() + 100 * DAY);
    // The timer armed before the step still runs its course (at most ~24.8 days), then sees the date has passed.
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(run).toHaveBeenCalledOnce();
  });

  it('runs a date already past at the next turn, and not at all once cancelled', () => {
    const past = vi.fn();
    atWallClock(Date.now() - 1000, past);
    expect(past).not.toHaveBeenCalled();
    vi.advanceTimersByTime(0);
    expect(past).toHaveBeenCalledOnce();
    const cancelled = vi.fn();
    const cancel = atWallClock(Date.now() + 40 * DAY, cancelled);
    vi.advanceTimersByTime(30 * DAY);
    cancel();
    vi.advanceTimersByTime(20 * DAY);
    expect(cancelled).not.toHaveBeenCalled();
  });
});

describe('withTimeout', () => {
  it('passes on what settles in time and leaves no timer behind', async () => {
    await expect(withTimeout(Promise.resolve(7), 100, timedOut('read', 100))).resolves.toBe(7);
    await expect(withTimeout(Promise.reject(new Error('refused')), 100, timedOut('read', 100))).rejects.toThrow('refused');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects with the error named and cancels what still runs when the time is up', async () => {
    const cancel = vi.fn();
    const late = withTimeout(new Promise(() => undefined), 100, timedOut('read', 100), cancel);
    const outcome = expect(late).rejects.toThrow('read timed out after 100 ms');
    vi.advanceTimersByTime(100);
    await outcome;
    expect(cancel).toHaveBeenCalledOnce();
  });
});
