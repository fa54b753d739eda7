/**
 * A guest's serial console as a bounded file: QEMU writes the console into a socket the agent
 * holds (args.ts, CONSOLE_FD), and the agent appends it to `<id>.console` in the run dir, a tmpfs
 * (RAM) on most gateways, cutting the file back to its newest half whenever it would pass its cap.
 * The agent writes the file rather than QEMU so it can cut it: QEMU's own file chardev would hold
 * the file open and write on past any cut.
 */
import { closeSync, fchmodSync, fstatSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from '../../log.js';

export const consolePathOf = (options: { runDir: string; id: string }) => join(options.runDir, `${options.id}.console`);

export class ConsoleFile {
  private fd: number;
  private size = 0;
  private failed = false;

  /** Starts an empty console at `path`, replacing an older one: only this user may read it (0600), as a console shows what the guest prints. */
  constructor(
    private readonly path: string,
    private readonly maxBytes: number,
  ) {
    this.fd = openPrivate(path);
  }

  /** Appends what `source` carries until it closes, then closes the file; output that cannot be written (a full tmpfs) is dropped, logged once. */
  follow(source: Readable, log: Logger): void {
    const dropped = (error: Error) => {
      if (!this.failed) log.warn({ console: this.path, err: error.message }, 'console output dropped');
      this.failed = true;
    };
    source.on('data', (chunk: Buffer) => {
      try {
        this.append(chunk);
      } catch (error) {
        dropped(error as Error);
      }
    });
    source.on('error', dropped);
    source.once('close', () => this.close());
  }

  /** Closes the file when no source will be followed (QEMU did not spawn). */
  close(): void {
    closeSync(this.fd);
  }

  /**
   * Synchronous, so that writes and cuts stay in order: a console carries little (a serial line's
   * speed at most), mostly onto a tmpfs. A cut keeps the newest half, so it comes once per half a
   * cap of output, and the file never holds more than `maxBytes` nor, once cut, less than half.
   */
  private append(chunk: Buffer): void {
    if (this.size + chunk.length <= this.maxBytes) {
      writeSync(this.fd, chunk);
      this.size += chunk.length;
      return;
    }
    const keep = Math.floor(this.maxBytes / 2);
    const kept = Buffer.concat([tail(this.fd, this.size, Math.max(0, keep - chunk.length)), chunk.subarray(-keep)]);
    // A new file renamed over the old one: a reader sees the whole of either, never one being rewritten.
    const partial = `${this.path}.part`;
    const fd = openPrivate(partial);
    try {
      writeSync(fd, kept);
      renameSync(partial, this.path);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    closeSync(this.fd);
    this.fd = fd;
    this.size = kept.length;
  }
}

/** The console at `path`, running or not: its last `bytes`, or '' if there is none. */
export function consoleTail(path: string, bytes: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    return tail(fd, fstatSync(fd).size, bytes).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** The last `bytes` of the file open as `fd`, which is `size` bytes long. */
function tail(fd: number, size: number, bytes: number): Buffer {
  const length = Math.min(bytes, size);
  const buffer = Buffer.alloc(length);
  readSync(fd, buffer, 0, length, size - length);
  return buffer;
}

/** An empty file only this user may read, whatever the umask and whatever mode an older one had; open for reading too, for the cut. */
function openPrivate(path: string): number {
  const fd = openSync(path, 'w+', 0o600);
  try {
    fchmodSync(fd, 0o600);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return fd;
}
