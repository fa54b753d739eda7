/**
 * Certificates for the TLS listener tests, made by the openssl command line: a CA, a server
 * certificate for 127.0.0.1, and client certificates by CN (also from a CA the broker does not know).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface Pair {
  cert: string;
  key: string;
}

export interface TestCertificates {
  /** The CA file (PEM) the broker verifies client certificates with, and clients verify the broker with. */
  ca: string;
  server: Pair;
  /** A client certificate with this CN, signed by `ca`. */
  client(cn: string): Pair;
  /** A client certificate with this CN from a CA the broker does not trust. */
  stranger(cn: string): Pair;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function selfSignedCa(dir: string, name: string): Pair {
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  openssl(['req', '-x509', ...EC, '-keyout', pair.key, '-out', pair.cert, '-subj', `/CN=${name}`]);
  return pair;
}

function issue(dir: string, ca: Pair, file: string, cn: string, extensions: string[] = []): Pair {
  const pair = { cert: join(dir, `${file}.pem`), key: join(dir, `${file}.key`) };
  const leaf = ['-addext', 'basicConstraints=critical,CA:FALSE', ...extensions];
  openssl(['req', '-x509', '-CA', ca.cert, '-CAkey', ca.key, ...EC, '-keyout', pair.key, '-out', pair.cert, '-subj', `/CN=${cn}`, ...leaf]);
  return pair;
}

export function makeCertificates(dir: string): TestCertificates {
  const ca = selfSignedCa(dir, 'test-ca');
  const other = selfSignedCa(dir, 'other-ca');
  return {
    ca: ca.cert,
    server: issue(dir, ca, 'server', 'edge-agent', ['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']),
    client: (cn) => issue(dir, ca, `client-${cn}`, cn),
    stranger: (cn) => issue(dir, other, `stranger-${cn}`, cn),
  };
}
