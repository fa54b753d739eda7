/**
 * This agent's identity towards its peers: a P-256 key and a self-signed certificate, made once and
 * kept in a directory. Peers pin the certificate's SHA-256 fingerprint: no CA, no shared secret.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSecretFile } from '../secret-file.js';
import { bitString, boolean, contextTag, distinguishedName, integer, objectIdentifier, octetString, OID, sequence, signedWithEcdsaSha256, time } from '../pki/der.js';

export interface PeerIdentity {
  certPem: string;
  keyPem: string;
  /** Lower-case hex SHA-256 of the certificate's DER: `openssl x509 -fingerprint -sha256` without the colons. */
  fingerprint: string;
}

/** Where the agent with data directory `dataDir` keeps its peer identity. */
export function identityDir(dataDir: string): string {
  return join(dataDir, 'workloads');
}

const KEY_FILE = 'identity.key';
const CERT_FILE = 'identity.crt';
const VALIDITY_YEARS = 10;

/**
 * The identity in `dir` (identity.key, identity.crt), created on first use for the agent called
 * `name`. An unreadable or mismatched pair is an error, never replaced: peers have pinned it.
 */
export function loadOrCreateIdentity(dir: string, name: string): PeerIdentity {
  const keyPath = join(dir, KEY_FILE);
  const certPath = join(dir, CERT_FILE);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const storedKey = readIfPresent(keyPath);
  const storedCert = readIfPresent(certPath);
  if (storedCert !== undefined && storedKey === undefined) {
    throw new Error(`${certPath} exists but its key ${keyPath} is missing: remove ${certPath} to create a new identity, which every peer must then pin anew`);
  }
  const key = storedKey === undefined ? createKey(keyPath) : parseKey(storedKey, keyPath);
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  if (storedCert !== undefined) {
    const cert = parseCertificate(storedCert, certPath);
    if (!cert.checkPrivateKey(key)) throw new Error(`${certPath} does not belong to the key ${keyPath}`);
    return { certPem: cert.toString(), keyPem, fingerprint: fingerprintOf(cert.raw) };
  }
  // First start, or a crash between writing the key and the certificate: nobody has pinned a certificate for this key yet.
  const cert = new X509Certificate(selfSignedCertificate(name, key));
  writeSecretFile(certPath, cert.toString());
  return { certPem: cert.toString(), keyPem, fingerprint: fingerprintOf(cert.raw) };
}

export function fingerprintOf(certDerOrPem: Buffer | string): string {
  return createHash('sha256').update(parseCertificate(certDerOrPem, 'the fingerprinted data').raw).digest('hex');
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
}

function createKey(path: string): KeyObject {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeSecretFile(path, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  return privateKey;
}

function parseKey(pem: string, path: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new Error(`${path} is not a private key: ${(error as Error).message}`);
  }
}

function parseCertificate(derOrPem: Buffer | string, what: string): X509Certificate {
  try {
    return new X509Certificate(derOrPem);
  } catch (error) {
    throw new Error(`${what} is not a certificate: ${(error as Error).message}`);
  }
}

const EXTENSION = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** An X.509 v3 end-entity certificate for `key`, issued by itself to CN=`name`, for both ends of TLS. */
function selfSignedCertificate(name: string, key: KeyObject): Buffer {
  const notBefore = new Date();
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  const serial = randomBytes(16);
  const subject = distinguishedName([[OID.commonName, name]]);
  const extension = (oid: string, critical: boolean, value: Buffer) =>
    sequence(objectIdentifier(oid), ...(critical ? [boolean(true)] : []), octetString(value));
  const tbsCertificate = sequence(
    contextTag(0, integer(Buffer.from([2]))), // v3
    integer(serial),
    sequence(objectIdentifier(OID.ecdsaWithSha256)),
    subject, // issuer
    sequence(time(notBefore), time(notAfter)),
    subject,
    createPublicKey(key).export({ type: 'spki', format: 'der' }),
    contextTag(
      3,
      sequence(
        extension(EXTENSION.basicConstraints, true, sequence()), // cA FALSE
        extension(EXTENSION.keyUsage, true, bitString(Buffer.from([0x80]), 7)), // digitalSignature: bit 0 of 8
        extension(EXTENSION.extKeyUsage, false, sequence(objectIdentifier(EXTENSION.serverAuth), objectIdentifier(EXTENSION.clientAuth))),
      ),
    ),
  );
  return signedWithEcdsaSha256(tbsCertificate, key);
}

