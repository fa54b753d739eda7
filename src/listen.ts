/** Opening a server: resolves once it listens, rejects with the error it met instead (EADDRINUSE, EACCES). */
import { lstat, unlink } from 'node:fs/promises';
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

/**
 * A socket file left by a process that did not stop would fail the listen: removed. Anything else
 * at the path is not ours to delete: false, for the caller to report (or for listen to).
 */
export async function removeLeftSocket(path: string): Promise<boolean> {
  const found = await lstat(path).catch(() => undefined);
  if (found?.isSocket()) await unlink(path);
  return !found || found.isSocket();
}
