/**
 * The TLS of a migration stream between two agents: each sends its certificate within the pinned
 * peer channel (the offer, the acceptance), and each takes the other's only if it is the very
 * certificate pinned for that peer. The stream itself then goes QEMU to QEMU (qemu/migration-tls.ts).
 */
import { X509Certificate } from 'node:crypto';
import * as v from 'valibot';
import { AgentError } from '../errors.js';
import { fingerprintOf, type PeerIdentity } from './identity.js';
import type { PeerConfig } from './peers.js';
import type { StreamTls } from './runtime.js';

/** A PEM certificate as a peer sends it: bounded, parsed and pinned by `pinnedStreamTls`. */
export const peerCertificate = v.pipe(v.string(), v.maxLength(16 * 1024));

/**
 * The stream's TLS towards `peer`, whose certificate `certPem` must be the one pinned for it (403
 * otherwise), and the name in that certificate, which the source checks the target's against.
 */
export function pinnedStreamTls(identity: PeerIdentity, peer: PeerConfig, certPem: string): { tls: StreamTls; peerName: string } {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certPem);
  } catch (error) {
    throw new AgentError(422, `peer ${peer.name} sent no certificate for the migration stream: ${(error as Error).message}`);
  }
  const fingerprint = fingerprintOf(certificate.raw);
  if (fingerprint !== peer.fingerprint) throw new AgentError(403, `peer ${peer.name} sent certificate ${fingerprint} for the migration stream, not its pinned ${peer.fingerprint}`);
  const peerName = /^CN=(.+)$/m.exec(certificate.subject)?.[1];
  if (!peerName) throw new AgentError(422, `the certificate of peer ${peer.name} names no CN for the migration stream to check`);
  return { tls: { certPem: identity.certPem, keyPem: identity.keyPem, peerCertPem: certificate.toString() }, peerName };
}
