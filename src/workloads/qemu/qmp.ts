/**
 * A client of QEMU's machine protocol (QMP): JSON objects, one a line, over QEMU's unix socket.
 * After the greeting and `qmp_capabilities`, each command gets an `id` and its answer is matched
 * by it; events arrive in between. Commands go one at a time, as QEMU runs them in order anyway
 * and a command that times out must not leave the next one waiting behind it unseen.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import * as v from 'valibot';
import { parseWith } from '../../schema.js';

const CONNECT_RETRY_MS = 20;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    message: string,
  ) {
    super(`QMP ${command} failed (${errorClass}): ${message}`);
  }
}

const GreetingSchema = v.object({ QMP: v.object({ version: v.object({ qemu: v.object({ major: v.number(), minor: v.number(), micro: v.number() }) }) }) });
const MessageSchema = v.union([
  v.object({ return: v.unknown(), id: v.optional(v.number()) }),
  v.object({ error: v.object({ class: v.string(), desc: v.string() }), id: v.optional(v.number()) }),
  v.object({ event: v.string(), data: v.optional(v.unknown()) }),
]);
type Message = v.InferOutput<typeof MessageSchema>;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export class QmpClient extends EventEmitter<{ event: [name: string, data: unknown]; close: [] }> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private queue: Promise<unknown> = Promise.resolve();
  private closedBecause: string | undefined;
  private buffered = '';

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
  ) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (error) => this.shutDown(error.message));
    socket.on('close', () => this.shutDown('connection closed'));
    socket.resume();
  }

  /**
   * Connects to a QEMU that may still be starting: retries until the socket accepts, reads the
   * greeting and leaves capabilities negotiation. `signal` stops the retries (QEMU exited).
   */
  static async connect(socketPath: string, timeoutMs: number, signal?: AbortSignal): Promise<QmpClient> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const socket = await openSocket(socketPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT' && error.code !== 'ECONNREFUSED') throw new Error(`QMP ${socketPath}: ${error.message}`);
        return undefined;
      });
      if (socket) return QmpClient.handshake(socket, socketPath, Math.max(deadline - performance.now(), CONNECT_RETRY_MS));
      if (performance.now() >= deadline) throw new Error(`QMP ${socketPath}: no QEMU listening after ${timeoutMs} ms`);
      await sleep(CONNECT_RETRY_MS);
    }
  }

  private static async handshake(socket: Socket, socketPath: string, timeoutMs: number): Promise<QmpClient> {
    const greeting = await readGreeting(socket, timeoutMs).catch((error: Error) => {
      socket.destroy();
      throw new Error(`QMP ${socketPath}: ${error.message}`);
    });
    const client = new QmpClient(socket, socketPath);
    client.onData(greeting.rest);
    try {
      await client.execute('qmp_capabilities', undefined, timeoutMs);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  get closed(): boolean {
    return this.closedBecause !== undefined;
  }

  /** Runs `command` after the ones before it have answered; an error answer rejects with a QmpError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    const run = () =>
      new Promise<unknown>((resolve, reject) => {
        if (this.closedBecause !== undefined) return reject(new Error(`QMP ${command}: ${this.closedBecause} (${this.socketPath})`));
        const id = this.nextId++;
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        this.pending.set(id, {
          command,
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result as Promise<T>;
  }

  /** Like execute(), with the answer checked against `schema`: QEMU's output is input like any other. */
  async query<S extends v.GenericSchema>(command: string, schema: S, args?: Record<string, unknown>, timeoutMs?: number): Promise<v.InferOutput<S>> {
    const answer = await this.execute(command, args, timeoutMs);
    const parsed = parseWith(schema, answer);
    if (parsed.ok) return parsed.value;
    throw new Error(`QMP ${command}: unexpected answer (${parsed.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')})`);
  }

  close(): void {
    this.socket.destroy();
    this.shutDown('connection closed');
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return this.shutDown(`QEMU sent a line that is not JSON: ${line.slice(0, 200)}`);
    }
    const parsed = parseWith(MessageSchema, json);
    if (!parsed.ok) return this.shutDown(`QEMU sent an unexpected message: ${line.slice(0, 200)}`);
    this.onMessage(parsed.value);
  }

  private onMessage(message: Message): void {
    if ('event' in message) {
      this.emit('event', message.event, message.data);
      return;
    }
    const pending = message.id === undefined ? undefined : this.pending.get(message.id);
    if (!pending) return;
    this.pending.delete(message.id!);
    if ('error' in message) pending.reject(new QmpError(pending.command, message.error.class, message.error.desc));
    else pending.resolve(message.return);
  }

  private shutDown(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.socket.destroy();
    for (const pending of this.pending.values()) pending.reject(new Error(`QMP ${pending.command}: ${reason} (${this.socketPath})`));
    this.pending.clear();
    this.emit('close');
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** The greeting line, and whatever QEMU sent after it in the same chunk. */
function readGreeting(socket: Socket, timeoutMs: number): Promise<{ rest: string }> {
  return new Promise((resolve, reject) => {
    let received = '';
    const finish = (error?: Error, rest = '') => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve({ rest });
    };
    const onData = (chunk: Buffer) => {
      received += chunk.toString('utf8');
      const newline = received.indexOf('\n');
      if (newline < 0) return;
      const line = received.slice(0, newline);
      let greeting: unknown;
      try {
        greeting = JSON.parse(line);
      } catch {
        greeting = undefined;
      }
      if (!parseWith(GreetingSchema, greeting).ok) return finish(new Error(`not a QMP greeting: ${line.slice(0, 200)}`));
      finish(undefined, received.slice(newline + 1));
    };
    const onError = (error: Error) => finish(error);
    const onClose = () => finish(new Error('closed before the greeting'));
    const timer = setTimeout(() => finish(new Error(`no greeting within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
