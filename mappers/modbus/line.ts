/**
 * One Modbus line (a TCP endpoint or a serial port), shared by the slaves on it. Requests go
 * one at a time: RTU is half-duplex, and a modbus-serial client matches one outstanding request.
 * A lost connection is reopened with backoff on the next request. Slaves that need quiet time
 * between frames get it before every request on their line.
 */
import type { ModbusRTU as Client } from 'modbus-serial/ModbusRTU.js';
import type { RequestObserver, RequestOutcome } from '../../src/mapperhost/contract.js';
import { RegisterGaps } from './gaps.js';
import { transportKey, type Transport } from './types.js';

/** Loaded on first use, with the native serial port binding it brings: most gateways have no Modbus device. */
async function createClient(): Promise<Client> {
  // modbus-serial is CommonJS: at run time its default export is the ModbusRTU class.
  const ModbusRTU = (await import('modbus-serial')).default as unknown as new () => Client;
  return new ModbusRTU();
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOENT', 'EACCES', 'Port Not Open']);

const EXCEPTIONS: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

export class ModbusError extends Error {
  /** The Modbus exception code, when the slave answered with one. */
  constructor(message: string, readonly exception?: number) {
    super(message);
  }
}

/** The slave answered with a Modbus exception (it is there, and said no), not a timeout or a broken line. */
export function isException(error: unknown): error is ModbusError & { exception: number } {
  return error instanceof ModbusError && error.exception !== undefined;
}

function describe(error: unknown, slaveId: number): ModbusError {
  const e = error as { modbusCode?: number; errno?: string; code?: string; message?: string };
  if (e.modbusCode !== undefined) return new ModbusError(`slave ${slaveId} answered exception ${e.modbusCode} (${EXCEPTIONS[e.modbusCode] ?? 'unknown'})`, e.modbusCode);
  if (e.errno === 'ETIMEDOUT') return new ModbusError(`slave ${slaveId} did not answer in time`);
  return new ModbusError(`slave ${slaveId}: ${e.message ?? String(error)}`);
}

/** modbus-serial answers a read with `{data: [...]}` (the registers or coils), a write with their address and count. */
function valuesRead(reply: unknown): number {
  const data = (reply as { data?: unknown } | undefined)?.data;
  return Array.isArray(data) ? data.length : 0;
}

function outcomeOf(error: { modbusCode?: number; errno?: string }): RequestOutcome {
  if (error.modbusCode !== undefined) return 'exception';
  return error.errno === 'ETIMEDOUT' ? 'timeout' : 'error';
}

export class ModbusLine {
  readonly key: string;
  /** What each slave on the line lacks, learned from exception answers, for every device of that slave. */
  readonly gaps = new RegisterGaps();
  private client?: Client;
  private queue: Promise<unknown> = Promise.resolve();
  private backoffMs = MIN_BACKOFF_MS;
  /** Monotonic (performance.now()), so a wall-clock step cannot hold a reconnect back for as long as it stepped. */
  private retryAt = 0;
  /** The longest quiet time a slave on the line asked for: after any frame on the bus, the slow slave must see the gap. */
  private delayMs = 0;
  private lastFrameAt = -Infinity;

  constructor(
    private readonly transport: Transport,
    /** Told about every exchange on the line (a retried timeout is two), when the agent counts them. */
    private readonly observer?: RequestObserver,
  ) {
    this.key = transportKey(transport);
  }

  /** Queues a request for `slaveId`; a timeout is retried once before it counts as a failure. */
  request<T>(slaveId: number, timeoutMs: number, send: (client: Client) => Promise<T>): Promise<T> {
    const result = this.queue.then(() => this.execute(slaveId, timeoutMs, send, 1));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Keeps at least `delayMs` between the end of one exchange on the line and the next request. */
  slowDown(delayMs: number): void {
    this.delayMs = Math.max(this.delayMs, delayMs);
  }

  close(): void {
    this.client?.close(() => undefined);
    this.client = undefined;
  }

  private async execute<T>(slaveId: number, timeoutMs: number, send: (client: Client) => Promise<T>, retries: number): Promise<T> {
    const client = await this.open();
    client.setID(slaveId);
    client.setTimeout(timeoutMs);
    // Node's timers run on a millisecond clock and may fire up to a millisecond early: wait until the gap has really passed.
    for (let quiet = this.quietLeft(); quiet > 0; quiet = this.quietLeft()) await new Promise((resolve) => setTimeout(resolve, Math.ceil(quiet)));
    try {
      const reply = await send(client);
      this.observer?.request(this.key, 'ok', valuesRead(reply));
      return reply;
    } catch (error) {
      const e = error as { modbusCode?: number; errno?: string; code?: string };
      this.observer?.request(this.key, outcomeOf(e), 0);
      if (CONNECTION_ERRORS.has(e.errno ?? e.code ?? '') || !client.isOpen) this.close();
      else if (e.errno === 'ETIMEDOUT' && retries > 0) return this.execute(slaveId, timeoutMs, send, retries - 1);
      throw describe(error, slaveId);
    } finally {
      this.lastFrameAt = performance.now();
    }
  }

  private quietLeft(): number {
    return this.lastFrameAt + this.delayMs - performance.now();
  }

  private async open(): Promise<Client> {
    if (this.client?.isOpen) return this.client;
    const wait = Math.ceil(this.retryAt - performance.now());
    if (wait > 0) throw new ModbusError(`${this.key} is not connected; next attempt in ${wait} ms`);
    const client = await createClient();
    try {
      if (this.transport.kind === 'tcp') await client.connectTCP(this.transport.host, { port: this.transport.port });
      // modbus-serial's "Telnet" port is raw RTU frames (slave id, CRC) on a socket; its "TcpRTUBuffered" still sends MBAP headers.
      else if (this.transport.kind === 'rtu-over-tcp') await client.connectTelnet(this.transport.host, { port: this.transport.port });
      else {
        const { path, baudRate, dataBits, parity, stopBits } = this.transport;
        await client.connectRTUBuffered(path, { baudRate, dataBits, parity, stopBits });
      }
    } catch (error) {
      this.retryAt = performance.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      throw new ModbusError(`cannot connect to ${this.key}: ${(error as Error).message}`);
    }
    this.backoffMs = MIN_BACKOFF_MS;
    this.retryAt = 0;
    this.client = client;
    return client;
  }
}
