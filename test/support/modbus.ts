/**
 * Real Modbus peers for tests: a pymodbus 3.0 server (`test/fixtures/modbus/server.py`, run with
 * Debian's /usr/bin/python3) as the device, over TCP, RTU on a socat pty pair or RTU frames over
 * TCP (a pass-through serial gateway), and mbpoll as
 * an independent master to cross-check what the agent reads and writes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './agent.js';

export const PYTHON = '/usr/bin/python3';
export const SOCAT = '/usr/bin/socat';
export const MBPOLL = '/usr/bin/mbpoll';
export const MODBUS_SERVER = join(ROOT, 'test/fixtures/modbus/server.py');

/** Initial contents of one table: PDU address (0-based) → a value or consecutive values. */
export type ModbusTableInit = Record<number, number | boolean | Array<number | boolean>>;
export type ModbusTable = 'co' | 'di' | 'hr' | 'ir';

export interface ModbusSlaveInit {
  /** Coils (read/write bits). */
  co?: ModbusTableInit;
  /** Discrete inputs (read-only bits). */
  di?: ModbusTableInit;
  /** Holding registers (read/write words). */
  hr?: ModbusTableInit;
  /** Input registers (read-only words). */
  ir?: ModbusTableInit;
  /** Requests touching these half-open ranges [start, end) answer with exception 2 (illegal data address). */
  illegal?: Partial<Record<ModbusTable, Array<[number, number]>>>;
  /** Requests touching these half-open ranges [start, end) answer with this exception code (2, 3 or 4). */
  refuse?: Partial<Record<ModbusTable, Array<[number, number, 2 | 3 | 4]>>>;
  /** A request sooner than this after the slave's previous one answers exception 6 (busy): a slow RS-485 slave. */
  minGapMs?: number;
  /** The slave never answers (the master times out). */
  silent?: boolean;
}

export interface ModbusServerOptions {
  /** Slave id → contents. Slave ids not listed never answer. */
  slaves: Record<number, ModbusSlaveInit>;
  /** Registers per table, 200 by default. */
  size?: number;
  /** What FC43 (read device identification, basic objects) answers, for every slave. */
  identity?: { VendorName?: string; ProductCode?: string; MajorMinorRevision?: string };
}

export interface ModbusServer {
  /** Sets words (hr, ir) or bits (co, di, as 0/1) in the running server. */
  set(slave: number, table: ModbusTable, address: number, values: Array<number | boolean>): Promise<void>;
  /** Reads the server's own store, bypassing Modbus. */
  get(slave: number, table: ModbusTable, address: number, count?: number): Promise<number[]>;
  /** Every request the slave has seen: when (monotonic ms), function code, address, count. */
  frames(slave: number): Promise<Array<{ ms: number; fc: number; address: number; count: number }>>;
  /** What the server printed on stderr (pymodbus logs errors there). */
  log(): string;
  stop(): Promise<void>;
}

export interface ModbusTcpServer extends ModbusServer {
  port: number;
}

export interface ModbusRtuServer extends ModbusServer {
  /** The pty end the server is attached to. */
  serverPath: string;
  /** The other pty end: where the agent (or mbpoll) talks to the device. */
  devicePath: string;
}

function exitOf(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = exitOf(child);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Spawns server.py and resolves once it prints `READY <where>`. */
async function startServer(args: string[], options: ModbusServerOptions, timeoutMs = 15_000): Promise<ModbusServer & { where: string }> {
  const config = JSON.stringify({ size: options.size, slaves: options.slaves, identity: options.identity });
  const child = spawn(PYTHON, ['-u', MODBUS_SERVER, ...args, config], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines: string[] = [];
  const waiters: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  const exited = exitOf(child);
  const nextLine = (what: string, ms: number) =>
    new Promise<string>((resolve, reject) => {
      const queued = lines.shift();
      if (queued !== undefined) return resolve(queued);
      const timer = setTimeout(() => reject(new Error(`modbus server: no ${what} within ${ms} ms; stderr: ${stderr.trim()}`)), ms);
      const done = (line: string) => {
        clearTimeout(timer);
        resolve(line);
      };
      waiters.push(done);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`modbus server exited (${code}) waiting for ${what}; stderr: ${stderr.trim()}`));
      });
    });
  // One command at a time: each is answered by exactly one line.
  let queue: Promise<unknown> = Promise.resolve();
  const command = (cmd: Record<string, unknown>): Promise<string> => {
    const run = queue.then(async () => {
      const answer = nextLine(`answer to ${JSON.stringify(cmd)}`, 5000);
      child.stdin!.write(`${JSON.stringify(cmd)}\n`);
      const line = await answer;
      if (line.startsWith('ERROR')) throw new Error(`modbus server: ${line}`);
      return line;
    });
    queue = run.catch(() => undefined);
    return run;
  };
  let ready: string;
  try {
    ready = await nextLine('READY line', timeoutMs);
    if (!ready.startsWith('READY ')) throw new Error(`modbus server: unexpected first line ${ready}; stderr: ${stderr.trim()}`);
  } catch (error) {
    await kill(child);
    throw error;
  }
  return {
    where: ready.slice('READY '.length).trim(),
    async set(slave, table, address, values) {
      await command({ op: 'set', slave, table, address, values: values.map(Number) });
    },
    async get(slave, table, address, count = 1) {
      const line = await command({ op: 'get', slave, table, address, count });
      return JSON.parse(line.slice('VALUES '.length)) as number[];
    },
    async frames(slave) {
      const line = await command({ op: 'frames', slave });
      const frames = JSON.parse(line.slice('FRAMES '.length)) as Array<[number, number, number, number]>;
      return frames.map(([ms, fc, address, count]) => ({ ms, fc, address, count }));
    },
    log: () => stderr,
    stop: () => kill(child),
  };
}

/**
 * A Modbus TCP device on 127.0.0.1. Without `port` the server binds port 0 and reports the
 * port it got (no race); with `port` (a restart on the same port) it reuses the address.
 */
export async function startModbusTcp(options: ModbusServerOptions & { port?: number }): Promise<ModbusTcpServer> {
  const server = await startServer(['tcp', '--host', '127.0.0.1', '--port', String(options.port ?? 0)], options);
  return { ...server, port: Number(server.where) };
}

/** RTU frames (slave id and CRC, no MBAP header) over TCP on 127.0.0.1: a serial gateway that passes the bytes through. */
export async function startModbusRtuOverTcp(options: ModbusServerOptions): Promise<ModbusTcpServer> {
  const server = await startServer(['rtutcp', '--host', '127.0.0.1', '--port', '0'], options);
  return { ...server, port: Number(server.where) };
}

/** `socat -d -d pty,raw,echo=0 pty,raw,echo=0`: resolves with both pty paths. */
export async function startPtyPair(timeoutMs = 5000): Promise<{ paths: [string, string]; stop(): Promise<void> }> {
  const child = spawn(SOCAT, ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const paths = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socat: no pty pair within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const found = [...stderr.matchAll(/PTY is (\S+)/g)].map((m) => m[1]!);
      // Both ptys exist once socat starts its transfer loop.
      if (found.length >= 2 && stderr.includes('starting data transfer loop')) {
        clearTimeout(timer);
        resolve([found[0]!, found[1]!]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socat exited (${code}): ${stderr}`));
    });
  }).catch(async (error: unknown) => {
    await kill(child);
    throw error;
  });
  return { paths, stop: () => kill(child) };
}

/** A Modbus RTU device (8N1) on one end of a socat pty pair; the agent talks to `devicePath`. */
export async function startModbusRtu(options: ModbusServerOptions & { baudRate?: number }): Promise<ModbusRtuServer> {
  const pty = await startPtyPair();
  const [serverPath, devicePath] = pty.paths;
  let server: ModbusServer & { where: string };
  try {
    server = await startServer(['rtu', '--device', serverPath, '--baudrate', String(options.baudRate ?? 9600)], options);
  } catch (error) {
    await pty.stop();
    throw error;
  }
  return {
    ...server,
    serverPath,
    devicePath,
    async stop() {
      await server.stop();
      await pty.stop();
    },
  };
}

export interface MbpollResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs mbpoll with these arguments (add `-1` to poll once); resolves whatever the exit code. */
export function mbpollRun(args: string[], timeoutMs = 15_000): Promise<MbpollResult> {
  const child = spawn(MBPOLL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return exitOf(child).then((code) => {
    clearTimeout(timer);
    return { code: typeof code === 'number' ? code : -1, stdout, stderr };
  });
}

/** Runs mbpoll and returns its stdout; rejects when it exits non-zero (timeouts, exceptions). */
export async function mbpoll(args: string[], timeoutMs?: number): Promise<string> {
  const result = await mbpollRun(args, timeoutMs);
  if (result.code !== 0) throw new Error(`mbpoll ${args.join(' ')} exited with ${result.code}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** The `[ref]: value` lines of mbpoll's output, as a map from reference to value text. */
export function mbpollValues(stdout: string): Map<number, string> {
  const values = new Map<number, string>();
  for (const match of stdout.matchAll(/^\[(\d+)\]:\s+(\S+)/gm)) values.set(Number(match[1]), match[2]!);
  return values;
}

/** mbpoll arguments for one poll of a TCP server at 127.0.0.1, 0-based (PDU) references. */
export function mbpollTcpArgs(port: number, { slave = 1, ref, count, type = '4' }: { slave?: number; ref: number; count?: number; type?: string }): string[] {
  return ['-m', 'tcp', '-p', String(port), '-a', String(slave), '-0', '-r', String(ref), ...(count ? ['-c', String(count)] : []), '-t', type, '-1', '127.0.0.1'];
}

/** mbpoll arguments for one poll of an RTU device (8N1), 0-based (PDU) references. */
export function mbpollRtuArgs(path: string, { slave = 1, ref, count, type = '4', baudRate = 9600 }: { slave?: number; ref: number; count?: number; type?: string; baudRate?: number }): string[] {
  return ['-m', 'rtu', '-b', String(baudRate), '-P', 'none', '-a', String(slave), '-0', '-r', String(ref), ...(count ? ['-c', String(count)] : []), '-t', type, '-1', path];
}

// ---- register encodings -------------------------------------------------------------------
// Words are what travels in registers (uint16). "Big-endian" is the Modbus norm: high byte
// first in each word, high word first across words; `wordSwap` puts the low word first
// (KubeEdge's isRegisterSwap), `byteSwap` swaps the two bytes in each word (isSwap).

export interface WordOrder {
  wordSwap?: boolean;
  byteSwap?: boolean;
}

function toWords(buffer: Buffer, { wordSwap = false, byteSwap = false }: WordOrder = {}): number[] {
  const words: number[] = [];
  for (let i = 0; i < buffer.length; i += 2) words.push(byteSwap ? buffer.readUInt16LE(i) : buffer.readUInt16BE(i));
  return wordSwap ? words.reverse() : words;
}

function fromWords(words: number[], { wordSwap = false, byteSwap = false }: WordOrder = {}): Buffer {
  const ordered = wordSwap ? [...words].reverse() : words;
  const buffer = Buffer.alloc(ordered.length * 2);
  ordered.forEach((word, i) => (byteSwap ? buffer.writeUInt16LE(word & 0xffff, i * 2) : buffer.writeUInt16BE(word & 0xffff, i * 2)));
  return buffer;
}

export function float32ToWords(value: number, order?: WordOrder): number[] {
  const buffer = Buffer.alloc(4);
  buffer.writeFloatBE(value);
  return toWords(buffer, order);
}

export function float64ToWords(value: number, order?: WordOrder): number[] {
  const buffer = Buffer.alloc(8);
  buffer.writeDoubleBE(value);
  return toWords(buffer, order);
}

export function int32ToWords(value: number, order?: WordOrder): number[] {
  const buffer = Buffer.alloc(4);
  buffer.writeInt32BE(value);
  return toWords(buffer, order);
}

export function uint32ToWords(value: number, order?: WordOrder): number[] {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value);
  return toWords(buffer, order);
}

/** A signed 16-bit value as the register word (two's complement). */
export function int16ToWord(value: number): number {
  return value & 0xffff;
}

/** ASCII text, two characters per register, high byte first, padded with NUL. */
export function stringToWords(text: string, registers: number): number[] {
  const buffer = Buffer.alloc(registers * 2);
  buffer.write(text, 'latin1');
  return toWords(buffer);
}

export function wordsToFloat32(words: number[], order?: WordOrder): number {
  return fromWords(words, order).readFloatBE(0);
}

export function wordsToFloat64(words: number[], order?: WordOrder): number {
  return fromWords(words, order).readDoubleBE(0);
}

export function wordsToInt32(words: number[], order?: WordOrder): number {
  return fromWords(words, order).readInt32BE(0);
}

export function wordsToUint32(words: number[], order?: WordOrder): number {
  return fromWords(words, order).readUInt32BE(0);
}

export function wordToInt16(word: number): number {
  return (word << 16) >> 16;
}
