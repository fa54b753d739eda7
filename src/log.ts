/** Structured JSON logs on stdout, one line per event. */
import { pino } from 'pino';
import sonicBoom from 'sonic-boom';

// sonic-boom is CommonJS: at run time its default export is the class its types call SonicBoom.
const SonicBoom = sonicBoom as unknown as typeof import('sonic-boom').SonicBoom;

export type Logger = pino.Logger;

/** Log lines buffered while stdout is slow; beyond this they are dropped rather than block the agent. */
const MAX_BUFFERED_BYTES = 1 << 20;
const FLUSH_TIMEOUT_MS = 1000;

/**
 * Asynchronous, bounded, and never waiting on a full pipe: a stalled or vanished reader of
 * stdout (a restarted journal, a dead parent) must not stop the agent. pino.destination() would
 * also flush synchronously at exit and retry EAGAIN forever; this stream is flushed by
 * `flushLogs` with a deadline instead.
 */
export function createLogger(level: string): Logger {
  const destination = new SonicBoom({ fd: 1, sync: false, maxLength: MAX_BUFFERED_BYTES, retryEAGAIN: () => false });
  destination.on('error', () => undefined);
  return pino(
    { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
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
