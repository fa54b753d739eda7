/** A promise that rejects with `error()` if `promise` has not settled within `ms`; `onTimeout` cancels what is still running. */
export function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(error());
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The usual error: what timed out, after how long. */
export const timedOut = (what: string, ms: number) => () => new Error(`${what} timed out after ${ms} ms`);
