/** Structured JSON logs on stdout, one line per event. */
import { pino } from 'pino';
import sonicBoom from 'sonic-boom';
import { redactUrl } from './redact.js';

// sonic-boom is CommonJS: at run time its default export is the class its types call SonicBoom.
const SonicBoom = sonicBoom as unknown as typeof import('sonic-boom').SonicBoom;

export type Logger = pino.Logger;

/** Log lines buffered while stdout is slow; beyond this they are dropped rather than block the agent. */
const MAX_BUFFERED_BYTES = 1 << 20;
const FLUSH_TIMEOUT_MS = 1000;

/** Fields whose values are secrets, wherever they sit in a logged object (down to four levels: a config's `wifi.networks[0].passphrase`). */
const SECRET_KEYS = ['password', 'passwordHash', 'passphrase', 'psk', 'token', 'secret', 'authorization', 'key', 'keyPem', 'privateKey'];
const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`]);

/**
 * Secrets never reach a line: fields named like one show `[Redacted]`, and a URL's password
 * (an external broker's `mqtt://user:password@host`) shows `***` wherever it appears in the
 * finished line, in a message, a field or an error's stack.
 *
 * Asynchronous, bounded, and never waiting on a full pipe: a stalled or vanished reader of
 * stdout (a restarted journal, a dead parent) must not stop the agent. pino.destination() would
 * also flush synchronously at exit and retry EAGAIN forever; this stream is flushed by
 * `flushLogs` with a deadline instead.
 */
export function createLogger(level: string): Logger {
  const destination = new SonicBoom({ fd: 1, sync: false, maxLength: MAX_BUFFERED_BYTES, retryEAGAIN: () => false });
  destination.on('error', () => undefined);
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: REDACTED_PATHS,
      hooks: { streamWrite: redactUrl },
    },
    destination,
  );
}

/** Writes out buffered lines, giving up after a second if stdout does not take them. */
export function flushLogs(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, FLUSH_TIMEOUT_MS).unref();
    log.flush(() => resolve());
  });
}
