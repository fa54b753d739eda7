/**
 * A CloudHub-compatible CloudCore for tests: the certificate service (10002) and the mutual-TLS
 * websocket hub (10000) on loopback, sharing one CA, as the real peer of the edge's cloud link.
 * Connect to 127.0.0.1 (the server certificate is for it and localhost), or the address it was given.
 */
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { createCertificateAuthority } from './ca.js';
import { certificateService, type IssuedCertificate } from './certificate-service.js';
import { Hub } from './hub.js';
import { joinToken } from './token.js';

export { deviceMessage, deviceModelMessage, membershipMessage, type KubeObject, type MembershipDevice } from './device-messages.js';
export type { IssuedCertificate } from './certificate-service.js';
export type { RegisteredNode } from './controllers.js';

export interface CloudHubOptions {
  /** 0 (the default) for an ephemeral port. */
  httpsPort?: number;
  wsPort?: number;
  /** Validity of issued edge certificates, 365 by default; fractions are fine. */
  edgeCertDays?: number;
  /** Lifetime of the join token's JWT, 24 h by default (CloudCore's), negative for an expired one. */
  tokenTtlS?: number;
  /** How often an unacknowledged downstream message is sent again: 5000 (CloudHub's) by default. */
  resendMs?: number;
  /** The address to listen on, 127.0.0.1 by default. */
  host?: string;
}

// CloudHub's createTLSConfig: TLS 1.2 only with this suite; TLS 1.3 suites are not configurable in Go.
const CLOUDHUB_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256';

/** A listener that can go away and come back on the same port, cutting its open connections. */
class Listener {
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    readonly server: Server,
    private readonly host: string,
  ) {
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

export class CloudHub extends Hub {
  /** Certificates signed, in order. */
  readonly issued: IssuedCertificate[] = [];

  constructor(
    /** keadm's join token: `<sha256 hex of the CA DER>.<JWT>`. */
    readonly token: string,
    readonly caPem: string,
    private readonly certificateListener: Listener,
    private readonly hubListener: Listener,
  ) {
    super();
  }

  get httpsPort(): number {
    return this.certificateListener.port;
  }

  get wsPort(): number {
    return this.hubListener.port;
  }

  /** The cloud goes away: both listeners close and every connection is cut. */
  async stop(): Promise<void> {
    this.dropConnections();
    await Promise.all([this.certificateListener.close(), this.hubListener.close()]);
  }

  /** The cloud comes back on the same ports. */
  async restart(): Promise<void> {
    await this.stop();
    await Promise.all([this.certificateListener.listen(this.httpsPort), this.hubListener.listen(this.wsPort)]);
  }
}

export async function startCloudHub(options: CloudHubOptions = {}): Promise<CloudHub> {
  const host = options.host ?? '127.0.0.1';
  const ca = await createCertificateAuthority(host);
  const token = joinToken(ca.der, ca.keySec1, options.tokenTtlS ?? 86_400);
  const certificates = new Listener(createServer({ ...ca.server, ca: ca.pem, requestCert: true, rejectUnauthorized: false }), host);
  const websockets = new Listener(
    createServer({ ...ca.server, ca: ca.pem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', ciphers: CLOUDHUB_CIPHERS }, (_, res) => {
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('Bad Request: websocket: the client is not using the websocket protocol');
    }),
    host,
  );
  const cloud = new CloudHub(token, ca.pem, certificates, websockets);
  if (options.resendMs !== undefined) cloud.resendMs = options.resendMs;
  certificates.server.on('request', certificateService({ ca, edgeCertDays: options.edgeCertDays ?? 365, issued: cloud.issued, errors: cloud.errors }));
  websockets.server.on('upgrade', cloud.upgrade);
  websockets.server.on('tlsClientError', (error) => cloud.errors.push(`TLS handshake on the hub failed: ${error.message}`));
  await Promise.all([certificates.listen(options.httpsPort ?? 0), websockets.listen(options.wsPort ?? 0)]);
  return cloud;
}
