/**
 * The embedded broker's listeners: plain TCP on `mqtt.host:port`, and TLS on `mqtt.tls` when
 * set, where a client certificate verified against `mqtt.tls.ca` names its user by its CN.
 * Each connection is handed on with where it comes from.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { ConfigError } from '../errors.js';
import { listening } from '../listen.js';
import type { Logger } from '../log.js';
import { isLoopback, type Peer } from './auth.js';
import type { MqttConfig, MqttTlsConfig } from './config.js';

export type Accept = (socket: Socket, peer: Peer) => void;

function readSetting(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(`mqtt.tls.${setting}: cannot read ${path}: ${(error as Error).message}`);
  }
}

async function listen(server: Server, port: number, host: string): Promise<number> {
  await listening(server, (done) => server.listen(port, host, done));
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

/** The CN of the client certificate, when the handshake verified it against `ca`. */
function certificateName(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn: string | string[] | undefined = socket.getPeerCertificate().subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}

function tlsServer(tls: MqttTlsConfig, maxConnections: number, accept: Accept, refused: (address: string | undefined, reason: string) => void): Server {
  const server = createTlsServer(
    {
      cert: readSetting(tls.cert, 'cert'),
      key: readSetting(tls.key, 'key'),
      ...(tls.ca ? { ca: readSetting(tls.ca, 'ca'), requestCert: true } : {}),
      rejectUnauthorized: tls.requireClientCert,
    },
    (socket) => {
      const name = certificateName(socket);
      accept(socket, { address: socket.remoteAddress ?? 'unknown', ...(name === undefined ? {} : { certificateName: name }) });
    },
  );
  server.on('tlsClientError', (error, socket) => refused(socket.remoteAddress, `TLS handshake failed: ${error.message}`));
  // Connections are counted once their handshake is done (policy.ts); this bounds those still in it.
  server.maxConnections = maxConnections;
  return server;
}

export interface Listeners {
  servers: Server[];
  /** The plain listener's port (`mqtt.port` 0 picks one). */
  port: number;
}

/** Opens the listeners; the TLS files are read first, so a missing one is a ConfigError naming its setting. */
export async function openListeners(config: MqttConfig, accept: Accept, refused: (address: string | undefined, reason: string) => void): Promise<Listeners> {
  const plain = createServer((socket) => accept(socket, { address: socket.remoteAddress ?? 'unknown' }));
  const tls = config.tls ? tlsServer(config.tls, config.maxConnections, accept, refused) : undefined;
  const servers = tls ? [plain, tls] : [plain];
  try {
    const port = await listen(plain, config.port, config.host);
    if (tls && config.tls) await listen(tls, config.tls.port, config.tls.host ?? config.host);
    return { servers, port };
  } catch (error) {
    await closeListeners(servers);
    throw error;
  }
}

export async function closeListeners(servers: Server[]): Promise<void> {
  await Promise.all(servers.filter((s) => s.listening).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
}

const isLoopbackHost = (host: string) => host === 'localhost' || isLoopback(host);

/**
 * What a bind beyond loopback means, said at start. No config value lets an anonymous client in
 * from another address (config.ts), so no bind needs refusing; these are warnings.
 */
export function warnExposure(config: MqttConfig, log: Logger): void {
  const hosts = [config.host, ...(config.tls ? [config.tls.host ?? config.host] : [])].filter((host) => !isLoopbackHost(host));
  if (hosts.length === 0) return;
  if (config.allowAnonymous === 'loopback') {
    log.warn({ hosts, allowAnonymous: config.allowAnonymous }, 'the MQTT broker listens beyond loopback: clients from other addresses must log in (mqtt.users); anonymous ones are accepted from loopback only');
  }
  if (!isLoopbackHost(config.host) && config.users.some((user) => user.passwordHash || user.passwordFile)) {
    log.warn({ host: config.host }, 'passwords sent to the plain MQTT listener cross the network unencrypted: give LAN clients mqtt.tls');
  }
}
