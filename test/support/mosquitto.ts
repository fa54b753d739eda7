/**
 * Debian's Mosquitto as a real peer: the broker (`/usr/sbin/mosquitto`) and its command-line
 * clients (`mosquitto_pub`, `mosquitto_sub`), each run as a separate process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { tempDir } from './agent.js';
import { accepts, freePort } from './ports.js';
import { waitFor } from './wait.js';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';
export const MOSQUITTO_SUB = '/usr/bin/mosquitto_sub';
const STDBUF = '/usr/bin/stdbuf';

function exitOf(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
}

export interface MosquittoBroker {
  url: string;
  port: number;
  /** What mosquitto logged so far (connections, errors). */
  log(): string;
  stop(): Promise<void>;
}

/** Starts mosquitto on a free loopback port and resolves once it accepts connections. */
export async function startMosquitto(): Promise<MosquittoBroker> {
  const dir = tempDir('mosquitto-test-');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n`);
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = exitOf(child);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `mosquitto to accept connections on ${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${output}`);
        return accepts(port);
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `mqtt://127.0.0.1:${port}`, port, log: () => output, stop };
}

function hostPort(url: string): string[] {
  const { hostname, port } = new URL(url);
  return ['-h', hostname, '-p', port || '1883'];
}

export interface SubMessage {
  topic: string;
  body: Record<string, unknown>;
}

export interface Subscription {
  /** Resolves once the broker has acknowledged the subscription (SUBACK). */
  ready: Promise<void>;
  /** Resolves with `count` messages, or rejects when mosquitto_sub times out or fails. */
  messages: Promise<SubMessage[]>;
  child: ChildProcess;
}

/**
 * `mosquitto_sub -C count -W timeout -v -d -t filter`: -d tells when the SUBACK arrived, so the
 * test publishes only once the subscription is in place; -v prefixes each message with its topic.
 */
export function mosquittoSub(url: string, filter: string, { count = 1, timeoutS = 5 } = {}): Subscription {
  // stdout is a pipe, which libc would block-buffer: stdbuf makes it line-buffered so that the
  // "Subscribed" line arrives when it is printed, not when mosquitto_sub exits.
  const child = spawn(STDBUF, ['-oL', MOSQUITTO_SUB, ...hostPort(url), '-t', filter, '-C', String(count), '-W', String(timeoutS), '-v', '-d'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const messages: SubMessage[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('Subscribed (mid')) return onReady();
    if (line.startsWith('Client ')) return;
    const space = line.indexOf(' ');
    const topic = line.slice(0, space);
    const payload = line.slice(space + 1);
    try {
      messages.push({ topic, body: JSON.parse(payload) as Record<string, unknown> });
    } catch {
      messages.push({ topic, body: { raw: payload } });
    }
  });
  const done = exitOf(child).then((code) => {
    if (code !== 0) throw new Error(`mosquitto_sub -t ${filter} exited with ${code} after ${messages.length}/${count} messages: ${stderr.trim()}`);
    return messages;
  });
  // Handled here too, so a subscription abandoned after a failed publish is no unhandled rejection.
  done.catch(() => undefined);
  // A sub that fails before its SUBACK must not leave `ready` pending forever.
  const readyOrFailed = Promise.race([ready, done.then(() => undefined)]);
  return { ready: readyOrFailed, messages: done, child };
}

/** `mosquitto_pub -q 1 -t topic -m payload`; resolves once the broker has acknowledged it. */
export async function mosquittoPub(url: string, topic: string, payload: string): Promise<void> {
  const child = spawn(MOSQUITTO_PUB, [...hostPort(url), '-q', '1', '-t', topic, '-m', payload], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await exitOf(child);
  if (code !== 0) throw new Error(`mosquitto_pub -t ${topic} exited with ${code}: ${stderr.trim()}`);
}

/** Subscribes with mosquitto_sub, publishes with mosquitto_pub, returns what the subscriber got. */
export async function mosquittoRequest(url: string, topic: string, payload: string, responseFilter: string, count = 1): Promise<SubMessage[]> {
  const sub = mosquittoSub(url, responseFilter, { count });
  try {
    await sub.ready;
    await mosquittoPub(url, topic, payload);
    return await sub.messages;
  } finally {
    if (sub.child.exitCode === null && sub.child.signalCode === null) sub.child.kill('SIGTERM');
  }
}
