/**
 * Password hashes for MQTT users: scrypt (RFC 7914), written `scrypt$N$r$p$salt$hash` (salt
 * and hash in base64), so a hash carries its own cost and stronger costs can come later
 * without invalidating the hashes already in configs.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export interface PasswordHash {
  cost: { N: number; r: number; p: number };
  salt: Buffer;
  hash: Buffer;
}

/**
 * Node's default cost: 16 MiB and some 50 ms per check on a gateway core. Checks run on the
 * libuv pool (4 threads), which bounds what a flood of logins can take at once.
 */
const COST = { N: 2 ** 14, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** scrypt needs 128·N·r bytes; a hash asking for more than this is refused rather than run. */
const MAX_MEMORY = 256 * 1024 * 1024;

const FORMAT = /^scrypt\$(\d{1,10})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** The parts of `scrypt$N$r$p$salt$hash`, or undefined when `text` is not such a hash or asks for an unreasonable cost. */
export function parsePasswordHash(text: string): PasswordHash | undefined {
  const match = FORMAT.exec(text.trim());
  if (!match) return undefined;
  const [N, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || r < 1 || p < 1 || 128 * N * r > MAX_MEMORY) return undefined;
  const salt = Buffer.from(match[4]!, 'base64');
  const hash = Buffer.from(match[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { cost: { N, r, p }, salt, hash };
}

function derive(password: string | Buffer, salt: Buffer, length: number, cost: PasswordHash['cost']): Promise<Buffer> {
  const options: ScryptOptions = { ...cost, maxmem: 128 * cost.N * cost.r * cost.p + 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(password, salt, length, options, (error, key) => (error ? reject(error) : resolve(key))));
}

/** A new hash of `password` with a random salt, in the form `parsePasswordHash` reads. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, HASH_BYTES, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Whether `password` is the one hashed; the comparison takes the same time wherever they differ. */
export async function verifyPassword(stored: PasswordHash, password: string | Buffer): Promise<boolean> {
  const hash = await derive(password, stored.salt, stored.hash.length, stored.cost);
  return timingSafeEqual(hash, stored.hash);
}

/**
 * Stands in for an unknown user's hash: checking against it costs what a real check costs,
 * so the time of a refusal does not tell whether the user exists.
 */
export const unknownUserHash: PasswordHash = { cost: COST, salt: randomBytes(SALT_BYTES), hash: randomBytes(HASH_BYTES) };
