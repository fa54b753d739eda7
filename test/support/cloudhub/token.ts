/**
 * keadm join tokens as CloudCore makes and checks them: `<sha256 hex of the CA DER>.<JWT>`, the
 * JWT being HS256 over `{exp}` with the CA key's SEC1 DER as secret (golang-jwt defaults).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

function signature(signed: string, secret: Buffer): Buffer {
  return createHmac('sha256', secret).update(signed).digest();
}

export function joinToken(caDer: Buffer, secret: Buffer, ttlS: number): string {
  const payload = Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + ttlS })).toString('base64url');
  const jwt = `${HEADER}.${payload}.${signature(`${HEADER}.${payload}`, secret).toString('base64url')}`;
  return `${createHash('sha256').update(caDer).digest('hex')}.${jwt}`;
}

/** Why `jwt` is not a valid token for `secret`, or undefined if it is. */
export function jwtProblem(jwt: string, secret: Buffer): string | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return 'token is malformed: token contains an invalid number of segments';
  const [header, payload, mac] = parts as [string, string, string];
  let alg: unknown;
  let exp: unknown;
  try {
    alg = JSON.parse(Buffer.from(header, 'base64url').toString()).alg;
    exp = JSON.parse(Buffer.from(payload, 'base64url').toString()).exp;
  } catch {
    return 'token is malformed: could not JSON decode header or claims';
  }
  if (alg !== 'HS256') return `token is unverifiable: unexpected signing method ${String(alg)}`;
  const expected = signature(`${header}.${payload}`, secret);
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'token signature is invalid: signature is invalid';
  if (exp !== undefined && (typeof exp !== 'number' || exp * 1000 <= Date.now())) return 'token has invalid claims: token is expired';
  return undefined;
}
