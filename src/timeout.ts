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
