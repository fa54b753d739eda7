/** Two byte streams joined both ways (a guest's port and a client, QEMU's migration socket and the peer tunnel). */
import type { Duplex } from 'node:stream';

/**
 * Pipes `a` into `b` and `b` into `a` (an end is passed on, so half-closes work) until either
 * closes, then destroys the other. Resolves once both are closed, with the first error either
 * side had, if any.
 */
export function splice(a: Duplex, b: Duplex): Promise<Error | undefined> {
  let failure: Error | undefined;
  const closed = (stream: Duplex) => new Promise<void>((resolve) => (stream.destroyed ? resolve() : stream.once('close', resolve)));
  for (const [stream, other] of [
    [a, b],
    [b, a],
  ] as const) {
    stream.on('error', (error: Error) => {
      failure ??= error;
      other.destroy();
    });
    stream.once('close', () => other.destroy());
  }
  a.pipe(b);
  b.pipe(a);
  return Promise.all([closed(a), closed(b)]).then(() => failure);
}
