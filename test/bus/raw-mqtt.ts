/**
 * MQTT 3.1.1 packets written byte by byte on a plain TCP socket, for what no well-behaved
 * client library sends: headers announcing huge packets, garbage after CONNECT, thousands of
 * bare connections.
 */
import { connect, type Socket } from 'node:net';

/** The Remaining Length field [MQTT-2.2.3]: 7 bits a byte, high bit for "more". */
export function remainingLength(length: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

const string = (text: string) => {
  const bytes = Buffer.from(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
};

/** CONNECT: protocol MQTT level 4, clean session, no credentials. */
export function connectPacket(clientId: string, keepalive = 60): Buffer {
  const body = [...string('MQTT'), 4, 0x02, keepalive >> 8, keepalive & 0xff, ...string(clientId)];
  return Buffer.from([0x10, ...remainingLength(body.length), ...body]);
}

/** PUBLISH at QoS 0, the header announcing `announced` bytes after it (default: what follows). */
export function publishHeader(topic: string, announced: number): Buffer {
  return Buffer.from([0x30, ...remainingLength(announced), ...string(topic)]);
}

export interface RawConnection {
  socket: Socket;
  /** The CONNACK return code, or undefined when the connection closed without one. */
  returnCode: number | undefined;
  closed: Promise<void>;
}

/** Opens a TCP connection, sends CONNECT, and waits for the CONNACK (or the close). */
export function rawConnect(port: number, clientId: string, keepalive = 60): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return new Promise((resolve) => {
    socket.once('connect', () => socket.write(connectPacket(clientId, keepalive)));
    socket.once('data', (data: Buffer) => resolve({ socket, returnCode: data[0] === 0x20 ? data[3] : undefined, closed }));
    void closed.then(() => resolve({ socket, returnCode: undefined, closed }));
  });
}
