/**
 * The wpa_supplicant control protocol (wpa_ctrl): text requests and replies as datagrams on a
 * unix socket. The client binds a socket of its own so the daemon can answer; after ATTACH the
 * daemon also sends unsolicited events, which start with `<priority>`.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

type UnixSockets = typeof import('node-unix-socket');

const EVENT = /^<(\d)>(.*)$/s;

export class WpaCtrlError extends Error {}

export interface WpaEvent {
  priority: number;
  /** e.g. `CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:00:00 completed [id=0 id_str=]`. */
  text: string;
}

let nextLocalId = 0;

/**
 * node-unix-socket is an optional dependency loaded here, not at import: its binaries exist for
 * linux-x64 only (none for arm64 or armhf), and without it only this backend is lost, not the agent.
 */
function dgramSocket(): InstanceType<UnixSockets['DgramSocket']> {
  try {
    return new (createRequire(import.meta.url)('node-unix-socket') as UnixSockets).DgramSocket();
  } catch (error) {
    const why = (error as Error).message.split('\n', 1)[0];
    throw new WpaCtrlError(
      `WiFi control through wpa_supplicant is unavailable on ${process.platform}-${process.arch}: node-unix-socket cannot load (${why}); wifi.backend: networkmanager works without it`,
    );
  }
}

interface Pending {
  command: string;
  resolve: (reply: string) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class WpaCtrl extends EventEmitter<{ event: [WpaEvent] }> {
  private readonly socket = dgramSocket();
  private readonly localPath: string;
  /** Replies carry no request id, so requests go one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private pending: Pending | undefined;
  private closed = false;

  /** `serverPath` is the daemon's socket (`<ctrl_interface dir>/<ifname>`, or the global one). */
  constructor(
    readonly serverPath: string,
    localDir: string,
  ) {
    super();
    mkdirSync(localDir, { recursive: true });
    this.localPath = join(localDir, `edge-agent-${process.pid}-${nextLocalId++}`);
    rmSync(this.localPath, { force: true });
    this.socket.bind(this.localPath);
    this.socket.on('data', (data: Buffer) => this.onDatagram(data.toString()));
    this.socket.on('error', (error: Error) => this.fail(new WpaCtrlError(`${serverPath}: ${error.message}`)));
  }

  private onDatagram(text: string): void {
    const event = EVENT.exec(text);
    if (event) {
      this.emit('event', { priority: Number(event[1]), text: event[2]! });
      return;
    }
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    pending.resolve(text);
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  /** Sends one command and resolves with the daemon's reply (`OK`, `FAIL`, or data). */
  request(command: string, timeoutMs = 5000): Promise<string> {
    const run = () =>
      new Promise<string>((resolve, reject) => {
        if (this.closed) return reject(new WpaCtrlError(`${this.serverPath}: control connection closed`));
        const verb = command.split(' ', 1)[0]!;
        const timer = setTimeout(() => {
          this.pending = undefined;
          reject(new WpaCtrlError(`${this.serverPath}: no reply to ${verb} within ${timeoutMs} ms`));
        }, timeoutMs);
        this.pending = { command, resolve, reject, timer };
        const buffer = Buffer.from(command);
        try {
          this.socket.sendTo(buffer, 0, buffer.length, this.serverPath, (error) => {
            if (error) this.fail(new WpaCtrlError(`${this.serverPath}: cannot send ${verb}: ${error.message}`));
          });
        } catch (error) {
          this.fail(new WpaCtrlError(`${this.serverPath}: cannot send ${verb}: ${(error as Error).message} (is wpa_supplicant running?)`));
        }
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Like request(), but a reply of `FAIL…` becomes an error naming the command. */
  async command(command: string, timeoutMs?: number): Promise<string> {
    const reply = await this.request(command, timeoutMs);
    if (reply.startsWith('FAIL') || reply.startsWith('UNKNOWN COMMAND')) {
      throw new WpaCtrlError(`${this.serverPath}: ${command.split(' ', 1)[0]} answered ${reply.trim()}`);
    }
    return reply;
  }

  /** Subscribes this connection to the daemon's events. */
  async attach(): Promise<void> {
    await this.command('ATTACH');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fail(new WpaCtrlError(`${this.serverPath}: control connection closed`));
    // DETACH is a courtesy; the daemon also drops clients whose socket is gone.
    const detach = Buffer.from('DETACH');
    try {
      this.socket.sendTo(detach, 0, detach.length, this.serverPath);
    } catch {
      // the daemon may be gone already
    }
    this.socket.close();
    rmSync(this.localPath, { force: true });
  }
}

/** `key=value` lines, as STATUS, SIGNAL_POLL and BSS answer. */
export function parseKeyValues(reply: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of reply.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values.set(line.slice(0, at), line.slice(at + 1));
  }
  return values;
}
