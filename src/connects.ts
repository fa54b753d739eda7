/** Probing a listener: the first thing its clients do, so "reachable" means what they would see. */
import { connect, type NetConnectOpts } from 'node:net';
import { timedOut, withTimeout } from './timeout.js';

/** Opens and closes a connection to `to` (a TCP host and port, or a unix socket path): undefined when it opened within `timeoutMs`, else what stopped it. */
export async function tryConnect(to: NetConnectOpts, timeoutMs: number): Promise<Error | undefined> {
  const socket = connect(to);
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      timeoutMs,
      timedOut('connecting', timeoutMs),
    );
    return undefined;
  } catch (error) {
    return error as Error;
  } finally {
    socket.destroy();
  }
}
