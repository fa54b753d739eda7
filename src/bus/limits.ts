/**
 * Bounds on what clients can make the embedded broker hold: packets refused from their fixed
 * header (before their body is buffered), connections, and retained messages. Keepalive and
 * subscriptions per client are checked at login and SUBSCRIBE (policy.ts).
 */
import type { Readable } from 'node:stream';
import type { Socket } from 'node:net';

/**
 * Follows the MQTT framing of a byte stream: a fixed header byte, the Remaining Length (1–4
 * bytes, 7 bits each, [MQTT-2.2.3]), then that many bytes. Reports a packet whose announced
 * size is over the limit as soon as its length is read.
 */
class FrameScanner {
  private state: 'header' | 'length' | 'body' = 'header';
  private length = 0;
  private lengthBytes = 0;
  private bodyLeft = 0;

  constructor(private readonly maxBytes: number) {}

  /** Why the stream must be cut, or undefined while every packet fits. */
  scan(chunk: Buffer): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'body') {
        const skipped = Math.min(this.bodyLeft, chunk.length - i);
        i += skipped;
        this.bodyLeft -= skipped;
        if (this.bodyLeft === 0) this.state = 'header';
        continue;
      }
      const byte = chunk[i++]!;
      if (this.state === 'header') {
        this.state = 'length';
        this.length = 0;
        this.lengthBytes = 0;
        continue;
      }
      this.length += (byte & 0x7f) * 128 ** this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes === 4) return 'malformed packet: Remaining Length longer than 4 bytes';
        continue;
      }
      const size = 1 + this.lengthBytes + this.length;
      if (size > this.maxBytes) return `packet of ${size} bytes exceeds mqtt.maxPacketBytes (${this.maxBytes})`;
      this.bodyLeft = this.length;
      this.state = this.bodyLeft > 0 ? 'body' : 'header';
    }
    return undefined;
  }
}

/**
 * Cuts the connection when a packet announces more than `maxBytes`. aedes reads its socket with
 * `read()` on 'readable'; with a 'readable' listener in control, a 'data' listener sees each
 * chunk `read()` returns, before aedes parses it, without changing the flow (Node's stream
 * docs: "'readable' takes precedence"). So it goes on after aedes has its listener, and at most
 * one socket read of an oversized packet is ever buffered.
 */
export function limitPacketSize(stream: Readable, maxBytes: number, refused: (reason: string) => void): void {
  const scanner = new FrameScanner(maxBytes);
  stream.on('data', (chunk: Buffer) => {
    const reason = scanner.scan(chunk);
    if (!reason) return;
    refused(reason);
    stream.destroy();
  });
}

/** CONNACK, return code 3 "server unavailable" (§3.2.2.3): the client learns why before the broker closes [MQTT-3.2.2-5]. */
const CONNACK_SERVER_UNAVAILABLE = Buffer.from([0x20, 0x02, 0x00, 0x03]);
/** How long a refused client gets to read the CONNACK and close. */
const REFUSED_LINGER_MS = 2000;

/** Open connections over all listeners, each counted until its socket closes. */
export class ConnectionLimit {
  private open = 0;

  constructor(private readonly max: number) {}

  /** Counts `socket`; or, with `max` already open, answers it CONNACK 3 and closes it (its CONNECT is read and dropped). */
  admit(socket: Socket): boolean {
    if (this.open >= this.max) {
      socket.on('error', () => undefined);
      socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
      socket.resume();
      socket.end(CONNACK_SERVER_UNAVAILABLE);
      return false;
    }
    this.open++;
    socket.once('close', () => this.open--);
    return true;
  }
}

/**
 * The retained messages clients leave on the broker, one per topic [MQTT-3.3.1-5], an empty
 * payload deleting it [MQTT-3.3.1-10], bounded by count and bytes (topic and payload).
 */
export class RetainedBudget {
  private readonly sizes = new Map<string, number>();
  private bytes = 0;

  constructor(
    private readonly maxMessages: number,
    private readonly maxBytes: number,
  ) {}

  /** Books the retained message; false, booking nothing, when it would go over the budget. */
  admit(topic: string, payloadBytes: number): boolean {
    const previous = this.sizes.get(topic);
    if (payloadBytes === 0) {
      if (previous !== undefined) this.bytes -= previous;
      this.sizes.delete(topic);
      return true;
    }
    const size = Buffer.byteLength(topic) + payloadBytes;
    const bytes = this.bytes - (previous ?? 0) + size;
    const messages = this.sizes.size + (previous === undefined ? 1 : 0);
    if (messages > this.maxMessages || bytes > this.maxBytes) return false;
    this.sizes.set(topic, size);
    this.bytes = bytes;
    return true;
  }
}

/**
 * Client ids whose session the broker keeps (they connected with `clean: false`): each holds
 * its subscriptions, and messages while its client is away, so their number is bounded. A clean
 * login with the id ends its kept session (aedes drops it).
 */
export class PersistentSessions {
  private readonly ids = new Set<string>();

  constructor(private readonly max: number) {}

  /** Books the session of a client logging in; false, booking nothing, for a new kept one beyond the limit. */
  admit(clientId: string, clean: boolean): boolean {
    if (clean) {
      this.ids.delete(clientId);
      return true;
    }
    if (this.ids.has(clientId)) return true;
    if (this.ids.size >= this.max) return false;
    this.ids.add(clientId);
    return true;
  }
}
