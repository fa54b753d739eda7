/** The error of the given class that `fn` throws; anything else fails the test. */
export function thrown<E extends Error>(ErrorClass: new (...args: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (error) {
    if (error instanceof ErrorClass) return error;
    throw error;
  }
  throw new Error(`expected a ${ErrorClass.name}, nothing was thrown`);
}
