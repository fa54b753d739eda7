/** Opening a server: resolves once it listens, rejects with the error it met instead (EADDRINUSE, EACCES). */
import type { Server } from 'node:net';

/** Runs `listen` (which calls `server.listen(…, done)`) and waits for the outcome; the error handler is taken off once it listens. */
export function listening(server: Server, listen: (done: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    listen(() => {
      server.off('error', reject);
      resolve();
    });
  });
}
