/**
 * A promise that rejects with `error()` if `promise` has not settled within `ms`; `onTimeout`
 * cancels what is still running. One promise and one timer: the mapper host runs this for every
 * property read, a thousand times a second on a busy gateway.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(error());
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (reason: unknown) => {
        clearTimeout(timer);
        reject(reason as Error);
      },
    );
  });
}

/** The usual error: what timed out, after how long. */
export const timedOut = (what: string, ms: number) => () => new Error(`${what} timed out after ${ms} ms`);

/** The longest delay a Node.js timer takes; a longer one fires at once. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs `run` at wall-clock time `at` (ms), however far away: a timer waits at most ~24.8 days,
 * so a longer wait is made of several. The wall clock, not monotonic time, as `at` is a date
 * (a certificate's): after a clock step the wait is measured again. Returns the canceller.
 */
export function atWallClock(at: number, run: () => void): () => void {
  let timer: NodeJS.Timeout;
  const arm = () => {
    timer = setTimeout(() => (Date.now() >= at ? run() : arm()), Math.min(Math.max(at - Date.now(), 0), LONGEST_TIMER_MS));
  };
  arm();
  return () => clearTimeout(timer);
}
