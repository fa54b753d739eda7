/**
 * The edge's identity towards CloudCore, obtained as EdgeCore's CertManager does: the CA from
 * /ca.crt (fetched unverified, then pinned by the hash in the join token), and a certificate for
 * a fresh P-256 key from /edge.crt, the first time with the token's JWT, later with the current
 * certificate as TLS client certificate.
 */
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { contextTag, distinguishedName, integer, OID, sequence, signedWithEcdsaSha256 } from '../pki/der.js';
import { writeSecretFile } from '../secret-file.js';

export interface CloudCredentials {
  caPem: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
  notBefore: Date;
}

export interface CertOptions {
  /** Host name or IP address of CloudCore. */
  server: string;
  /** CloudCore's certificate service, 10002 by default. */
  httpsPort: number;
  node: string;
  /** keadm's join token: `<sha256 hex of the CA DER>.<JWT>`. */
  token?: string;
  /** Where ca.crt, edge.crt and edge.key are kept, e.g. `<dataDir>/cloud`. */
  dir: string;
  /** The address to connect from (wifi.sensitive); the system's choice when absent. */
  localAddress?: string;
  log: Logger;
}

export class CertificateError extends Error {}

const CA_FILE = 'ca.crt';
const CERT_FILE = 'edge.crt';
const KEY_FILE = 'edge.key';
const REQUEST_TIMEOUT_MS = 30_000;
/** EdgeCore's MaxRespBodyLength. */
const MAX_BODY_BYTES = 1 << 20;

/** Existing valid credentials from `dir`, or a bootstrap with the token (CertificateError if none/invalid). */
export async function ensureCredentials(options: CertOptions): Promise<CloudCredentials> {
  const stored = await loadCredentials(options.dir, options.node);
  if ('credentials' in stored) {
    options.log.info({ notAfter: stored.credentials.notAfter }, 'using the stored edge certificate');
    return stored.credentials;
  }
  if (!options.token) throw new CertificateError(`${stored.problem}, and there is no join token to request a certificate with`);
  options.log.info({ reason: stored.problem }, 'requesting an edge certificate with the join token');
  const { caHash, jwt } = splitToken(options.token);
  const caBytes = await get(options, '/ca.crt', { rejectUnauthorized: false });
  const received = createHash('sha256').update(caBytes).digest('hex');
  if (received !== caHash) {
    throw new CertificateError(`join token does not match the cloud's CA: the token pins ${caHash}, ${url(options, '/ca.crt')} served a CA hashing to ${received}`);
  }
  const ca = parseCertificate(caBytes, `the CA from ${url(options, '/ca.crt')}`);
  const credentials = await requestCertificate(options, ca, { headers: { Authorization: `Bearer ${jwt}` } });
  options.log.info({ notAfter: credentials.notAfter }, 'edge certificate issued');
  return credentials;
}

/** Re-issues the edge certificate with the current one as TLS client certificate and a fresh key: GET /edge.crt. */
export async function rotateCredentials(current: CloudCredentials, options: CertOptions): Promise<CloudCredentials> {
  const ca = parseCertificate(current.caPem, 'the stored CA');
  const credentials = await requestCertificate(options, ca, { cert: current.certPem, key: current.keyPem });
  options.log.info({ notAfter: credentials.notAfter }, 'edge certificate rotated');
  return credentials;
}

/** When to rotate: at a random point between 70% and 90% of the lifetime (as EdgeCore does). */
export function rotationDelayMs(credentials: CloudCredentials, now = Date.now(), random: () => number = Math.random): number {
  const notBefore = credentials.notBefore.getTime();
  const lifetime = credentials.notAfter.getTime() - notBefore;
  return Math.max(0, notBefore + lifetime * (0.7 + 0.2 * random()) - now);
}

function splitToken(token: string): { caHash: string; jwt: string } {
  const [caHash, ...jwt] = token.split('.');
  if (jwt.length !== 3) throw new CertificateError(`join token is malformed: expected <CA hash>.<JWT>, 4 dot-separated parts, got ${jwt.length + 1}`);
  return { caHash: caHash!, jwt: jwt.join('.') };
}

type Stored = { credentials: CloudCredentials } | { problem: string };

/** The CN CloudHub requires of a node's certificate (and that the CSR asks for). */
const nodeCommonName = (node: string) => `system:node:${node}`;

/** The certificate's subject CN (X509Certificate.subject is `key=value` lines). */
function commonName(cert: X509Certificate): string | undefined {
  return cert.subject
    .split('\n')
    .find((line) => line.startsWith('CN='))
    ?.slice(3);
}

async function loadCredentials(dir: string, node: string): Promise<Stored> {
  let files: string[];
  try {
    files = await Promise.all([CA_FILE, CERT_FILE, KEY_FILE].map((name) => readFile(join(dir, name), 'utf8')));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { problem: `no edge certificate in ${dir}` };
    return { problem: `cannot read the edge certificate in ${dir}: ${(error as Error).message}` };
  }
  const [caPem, certPem, keyPem] = files as [string, string, string];
  try {
    const cert = new X509Certificate(certPem);
    // After a node rename the stored certificate names the old node: CloudHub refuses it for the new one.
    const cn = commonName(cert);
    if (cn !== nodeCommonName(node)) return { problem: `the edge certificate in ${dir} is for ${cn ?? 'no CN'}, not ${nodeCommonName(node)}` };
    const credentials = checkedCredentials(new X509Certificate(caPem), cert, createPrivateKey(keyPem));
    if (credentials.notAfter.getTime() <= Date.now()) return { problem: `the edge certificate in ${dir} expired on ${credentials.notAfter.toISOString()}` };
    return { credentials };
  } catch (error) {
    return { problem: `the edge certificate in ${dir} is unusable: ${(error as Error).message}` };
  }
}

/** The credentials if `cert` was signed by `ca` for `key`. */
function checkedCredentials(ca: X509Certificate, cert: X509Certificate, key: KeyObject): CloudCredentials {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new CertificateError(`certificate ${cert.subject.replace(/\n/g, ', ')} is not signed by the CA ${ca.subject.replace(/\n/g, ', ')}`);
  }
  if (!cert.checkPrivateKey(key)) throw new CertificateError('certificate and private key do not belong together');
  return {
    caPem: ca.toString(),
    certPem: cert.toString(),
    keyPem: key.export({ type: 'sec1', format: 'pem' }).toString(),
    notAfter: new Date(cert.validTo),
    notBefore: new Date(cert.validFrom),
  };
}

/** The join token's JWT, or the current certificate and key as TLS client certificate. */
type Authentication = { headers: { Authorization: string } } | { cert: string; key: string };

/** GET /edge.crt for a fresh key (body: the CSR's DER), verifying CloudCore against `ca`; stores and returns the result. */
async function requestCertificate(options: CertOptions, ca: X509Certificate, auth: Authentication): Promise<CloudCredentials> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = certificateRequest(options.node, privateKey, publicKey);
  const headers = { ...('headers' in auth ? auth.headers : {}), NodeName: options.node };
  const answer = await get(options, '/edge.crt', { ...auth, ca: ca.toString(), headers }, csr);
  const cert = parseCertificate(answer, `the certificate from ${url(options, '/edge.crt')}`);
  let credentials: CloudCredentials;
  try {
    credentials = checkedCredentials(ca, cert, privateKey);
  } catch (error) {
    throw new CertificateError(`${url(options, '/edge.crt')} returned an unusable certificate: ${(error as Error).message}`);
  }
  await saveCredentials(options.dir, credentials);
  return credentials;
}

function parseCertificate(derOrPem: Buffer | string, what: string): X509Certificate {
  try {
    return new X509Certificate(derOrPem);
  } catch (error) {
    throw new CertificateError(`${what} is not a certificate: ${(error as Error).message}`);
  }
}

/** The CSR EdgeCore sends (PKCS#10): subject O=system:nodes, CN=system:node:<node>, signed with ECDSA SHA-256. */
function certificateRequest(node: string, privateKey: KeyObject, publicKey: KeyObject): Buffer {
  const subject = distinguishedName([
    [OID.organization, 'system:nodes'],
    [OID.commonName, nodeCommonName(node)],
  ]);
  const version1 = integer(Buffer.from([0]));
  const noAttributes = contextTag(0);
  return signedWithEcdsaSha256(sequence(version1, subject, publicKey.export({ type: 'spki', format: 'der' }), noAttributes), privateKey);
}

async function saveCredentials(dir: string, credentials: CloudCredentials): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  writeSecretFile(join(dir, CA_FILE), credentials.caPem);
  writeSecretFile(join(dir, KEY_FILE), credentials.keyPem);
  writeSecretFile(join(dir, CERT_FILE), credentials.certPem);
}

function url(options: CertOptions, path: string): string {
  const host = options.server.includes(':') ? `[${options.server}]` : options.server;
  return `https://${host}:${options.httpsPort}${path}`;
}

/** The body of a 200 answer to GET `path` (which EdgeCore sends with a body), or a CertificateError. */
function get(options: CertOptions, path: string, tls: RequestOptions & { headers?: Record<string, string> }, body?: Buffer): Promise<Buffer> {
  const target = url(options, path);
  return new Promise((resolve, reject) => {
    const fail = (message: string) => reject(new CertificateError(message));
    const req = request(target, {
      ...tls,
      method: 'GET',
      agent: false,
      localAddress: options.localAddress,
      timeout: REQUEST_TIMEOUT_MS,
      headers: { ...tls.headers, ...(body ? { 'Content-Length': body.length } : {}) },
    });
    req.on('timeout', () => {
      fail(`the cloud is unreachable at ${target}: no answer within ${REQUEST_TIMEOUT_MS} ms`);
      req.destroy();
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      // Socket errors carry the failing syscall; TLS failures (an unexpected CA, a refused client certificate) do not.
      fail(error.syscall ? `the cloud is unreachable at ${target}: ${error.message}` : `TLS with the cloud at ${target} failed: ${error.message}`);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_BODY_BYTES) return void chunks.push(chunk);
        fail(`${target} answered more than ${MAX_BODY_BYTES} bytes`);
        req.destroy();
      });
      res.on('end', () => {
        const answer = Buffer.concat(chunks);
        if (res.statusCode === 200) resolve(answer);
        else fail(`${target} answered ${res.statusCode} ${res.statusMessage ?? ''}: ${answer.toString('utf8').trim()}`);
      });
    });
    req.end(body);
  });
}
