/**
 * DER (X.690) for the little ASN.1 that certificate requests (RFC 2986) and certificates
 * (RFC 5280) need: node:crypto signs but cannot build either.
 */
import { sign, type KeyObject } from 'node:crypto';

export function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag, ...derLength(body.length)]), body]);
}

function derLength(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes = [];
  for (let rest = length; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

export const sequence = (...contents: Buffer[]) => der(0x30, ...contents);
export const set = (...contents: Buffer[]) => der(0x31, ...contents);
export const utf8String = (value: string) => der(0x0c, Buffer.from(value, 'utf8'));
export const octetString = (value: Buffer) => der(0x04, value);
export const bitString = (value: Buffer, unusedBits = 0) => der(0x03, Buffer.from([unusedBits]), value);
export const boolean = (value: boolean) => der(0x01, Buffer.from([value ? 0xff : 0]));
/** A constructed, context-specific tag: `[n] EXPLICIT`, or an IMPLICIT SET/SEQUENCE. */
export const contextTag = (n: number, ...contents: Buffer[]) => der(0xa0 | n, ...contents);

/** A non-negative INTEGER from its big-endian magnitude, in the fewest bytes. */
export function integer(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const bytes = magnitude.subarray(start);
  return der(0x02, (bytes[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

export function objectIdentifier(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128 = [arc & 0x7f];
    for (let high = Math.floor(arc / 0x80); high > 0; high = Math.floor(high / 0x80)) base128.unshift(0x80 | (high & 0x7f));
    bytes.push(...base128);
  }
  return der(0x06, Buffer.from(bytes));
}

/** UTCTime through 2049, GeneralizedTime from 2050 on, to the second (RFC 5280 4.1.2.5). */
export function time(date: Date): Buffer {
  const digits = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:T]/g, '');
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050 ? der(0x17, Buffer.from(digits.slice(2))) : der(0x18, Buffer.from(digits));
}

export const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
} as const;

/** A Name of one UTF8String attribute per relative distinguished name, in order: `[[OID.commonName, 'x']]`. */
export function distinguishedName(attributes: [oid: string, value: string][]): Buffer {
  return sequence(...attributes.map(([oid, value]) => set(sequence(objectIdentifier(oid), utf8String(value)))));
}

/** `SEQUENCE { info, ecdsa-with-SHA256, BIT STRING signature }`: the envelope of both a CSR and a certificate. */
export function signedWithEcdsaSha256(info: Buffer, privateKey: KeyObject): Buffer {
  return sequence(info, sequence(objectIdentifier(OID.ecdsaWithSha256)), bitString(sign('sha256', info, privateKey)));
}
