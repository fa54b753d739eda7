/**
 * QEMU's own TLS on a migration stream, with the agents' pinned certificates: the stream goes
 * straight from QEMU to QEMU, so nothing is added between them at stop-and-copy, and GnuTLS in
 * QEMU does what the peer channel does in the agent. Each end's trust store is the one certificate
 * the other must present (no CA: GnuTLS accepts a certificate that is itself in the trust store,
 * and a CA:FALSE certificate can vouch for no other), `verify-peer=on` makes the target demand the
 * source's, and the source checks the target's name as well.
 *
 * QEMU reads the files when the credentials object is made; the directory holding the key's copy
 * goes right after. `sanity-check=off`: QEMU's own checks want a CA certificate with keyCertSign
 * and key encipherment in ours, which these self-signed ECDSA identities have no use for.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';
import type { StreamTls } from '../runtime.js';
import type { QmpClient } from './qmp.js';

export type TlsEndpoint = 'server' | 'client';

/**
 * RFC 7919's ffdhe2048 group, public and standard. Without a `dh-params.pem` a server end makes
 * fresh 2048-bit DH parameters inside object-add: ~0.2 s of CPU on a PC, long enough on a slow
 * gateway (or under nested emulation) to miss the QMP deadline. TLS 1.3 agrees keys by ECDHE
 * anyway; the group is only ever used by a TLS 1.2 client offering finite-field DH.
 */
const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;

/** What the target's query-migrate says about the address it listens on (QEMU sends the port as a string). */
const ListeningSchema = v.object({
  'socket-address': v.pipe(v.array(v.object({ type: v.string(), port: v.optional(v.string()) })), v.minLength(1)),
});

/**
 * Adds credentials `id` for `endpoint` and makes the next migration of this QEMU use them; the
 * source's also name the certificate it expects (`peerName`). The files exist only meanwhile.
 */
export async function useTls(qmp: QmpClient, dir: string, id: string, endpoint: TlsEndpoint, tls: StreamTls, peerName?: string): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  try {
    // Names QEMU looks for in `dir`.
    writeFileSync(join(dir, 'ca-cert.pem'), tls.peerCertPem, { mode: 0o600 });
    writeFileSync(join(dir, `${endpoint}-cert.pem`), tls.certPem, { mode: 0o600 });
    writeFileSync(join(dir, `${endpoint}-key.pem`), tls.keyPem, { mode: 0o600 });
    if (endpoint === 'server') writeFileSync(join(dir, 'dh-params.pem'), FFDHE2048_PEM);
    await qmp.execute('object-add', { 'qom-type': 'tls-creds-x509', id, dir, endpoint, 'verify-peer': true, 'sanity-check': false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await qmp.execute('migrate-set-parameters', { 'tls-creds': id, ...(peerName === undefined ? {} : { 'tls-hostname': peerName }) });
}

/** The next migration of this QEMU goes without TLS (a snapshot into a local socket), whatever an earlier one used. */
export async function dropTls(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': '', 'tls-hostname': '' });
}

/** Credentials an earlier attempt left (a migration that failed and left the guest here) go before new ones come. */
export async function removeTls(qmp: QmpClient, id: string): Promise<void> {
  await qmp.execute('object-del', { id }).catch(() => undefined);
}

/** The port a target started with `migrate-incoming tcp:<host>:0` took. */
export async function listeningPort(qmp: QmpClient): Promise<number> {
  const answer = await qmp.query('query-migrate', ListeningSchema);
  const port = Number(answer['socket-address'][0]!.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`QEMU listens for the migration on no TCP port (${JSON.stringify(answer['socket-address'])})`);
  return port;
}

/** QEMU's `tcp:` address for `host`: an IPv6 address in brackets; `,mptcp` for a Multipath TCP socket. */
export function tcpUri(host: string, port: number, mptcp: boolean): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return `tcp:${bare.includes(':') ? `[${bare}]` : bare}:${port}${mptcp ? ',mptcp' : ''}`;
}
