/**
 * The event id of a report staged without one: a name-based UUID (RFC 4122 version 5) of the
 * report's message id, so it costs nothing to store and is the same at every send of the report.
 */
import { createHash } from 'node:crypto';

/** This agent's namespace for report event ids (a fixed random UUID): ids of other origins cannot collide with them. */
const NAMESPACE = Buffer.from('5b0f3a4e8c2d4e1f9a7b6c5d4e3f2a1b', 'hex');

export function eventIdOf(msgId: string): string {
  const hash = createHash('sha1').update(NAMESPACE).update(msgId).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.toString('hex', 0, 16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
