/**
 * CloudCore's certificate authority: an ECDSA P-256 CA (as CloudCore generates it), the
 * certificate its servers present, and the signing of edge CSRs as `SignCerts` does it.
 */
import './reflect-metadata.js';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

export interface CertificateAuthority {
  der: Buffer;
  pem: string;
  /** The CA key as SEC1 DER: CloudCore's HMAC secret for join tokens. */
  keySec1: Buffer;
  /** Certificate and key (PEM) for CloudCore's listeners, valid for its address (127.0.0.1 by default) and localhost. */
  server: { cert: string; key: string };
  /** Signs an edge CSR (DER) keeping only its CN and O, for client authentication. */
  signRequest(csrDer: Buffer, days: number): Promise<{ der: Buffer; cn: string; o: string }>;
}

export class CsrError extends Error {}

function randomSerial(): string {
  const serial = randomBytes(16);
  serial[0]! &= 0x7f; // a positive INTEGER
  return serial.toString('hex');
}

async function pemKey(key: CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey));
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

export async function createCertificateAuthority(address = '127.0.0.1'): Promise<CertificateAuthority> {
  const generate = () => webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
  const caKeys = await generate();
  const now = Date.now();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: 'CN=KubeEdge',
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 100 * 365 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: ECDSA_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const issue = async (subject: x509.JsonName, publicKey: x509.PublicKeyType, days: number, extensions: x509.Extension[]) => {
    const issuedAt = Date.now();
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: caCert.subjectName,
      publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ECDSA_P256,
      notBefore: new Date(issuedAt),
      notAfter: new Date(issuedAt + days * DAY_MS),
      extensions: [...extensions, await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey)],
    });
  };

  const serverKeys = await generate();
  const serverCert = await issue([{ CN: ['cloudcore'] }], serverKeys.publicKey, 365, [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension([
      { type: 'ip', value: address },
      { type: 'dns', value: 'localhost' },
    ]),
  ]);

  const caKeyPkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', caKeys.privateKey as webcrypto.CryptoKey));
  return {
    der: Buffer.from(caCert.rawData),
    pem: caCert.toString('pem'),
    keySec1: createPrivateKey({ key: caKeyPkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'sec1', format: 'der' }),
    server: { cert: serverCert.toString('pem'), key: await pemKey(serverKeys.privateKey) },
    async signRequest(csrDer, days) {
      let csr: x509.Pkcs10CertificateRequest;
      try {
        csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
      } catch (error) {
        throw new CsrError(`not a PKCS#10 request: ${(error as Error).message}`);
      }
      if (!(await csr.verify())) throw new CsrError('the CSR signature does not verify');
      const cn = csr.subjectName.getField('CN')[0] ?? '';
      const o = csr.subjectName.getField('O')[0] ?? '';
      const subject: x509.JsonName = [...(o ? [{ O: [o] }] : []), { CN: [cn] }];
      const cert = await issue(subject, csr.publicKey, days, [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ]);
      return { der: Buffer.from(cert.rawData), cn, o };
    },
  };
}
