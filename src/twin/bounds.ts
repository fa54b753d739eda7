/**
 * What keeps one device's twin small, whatever its devices send: keys its DeviceModel does not
 * define (KubeEdge lets devices add them) at most `maxExtraProperties`, their tombstones
 * included until purged, `tombstoneTtlMs` after the deletion; a `twin/get` answer at most
 * `maxGetBytes`. With the keys bounded, so is the history: `historySize` rows a key, so at most
 * historySize × (model properties + maxExtraProperties) rows a device.
 */
import { DELETED, TwinError, toMsgTwin, type MsgTwin, type TwinProperty } from './types.js';

/** The twin section of the config that bounds a twin. */
export interface TwinLimits {
  maxExtraProperties: number;
  tombstoneTtlMs: number;
  maxGetBytes: number;
}

/**
 * Whether a deleted key not in the model may be purged: deleted longer than the TTL ago, before
 * deletion times were kept, or at a time still in the future (the clock was stepped back since,
 * so its age is unknown). Purging early is safe: the deletion was announced and queued for the
 * cloud when it was made; only its versions are forgotten, as for a key that never existed.
 */
export function isExpiredTombstone(p: TwinProperty, now: number, ttlMs: number): boolean {
  if (p.type !== DELETED || p.inModel) return false;
  return p.deletedAt === undefined || p.deletedAt > now || now - p.deletedAt >= ttlMs;
}

/**
 * For an update that adds keys: the tombstones to purge, oldest deletion first, so that the twin
 * after `staged` holds at most `max` keys outside the model. Refuses the update (400) when its
 * live keys outside the model alone would be more.
 */
export function tombstonesToMakeRoom(deviceId: string, twin: ReadonlyMap<string, TwinProperty>, staged: ReadonlyMap<string, TwinProperty>, max: number): string[] {
  let live = 0;
  const tombstones: Array<{ key: string; deletedAt: number }> = [];
  const count = (key: string, p: TwinProperty) => {
    if (p.inModel) return;
    if (p.type === DELETED) tombstones.push({ key, deletedAt: p.deletedAt ?? 0 });
    else live += 1;
  };
  for (const [key, p] of twin) count(key, staged.get(key) ?? p);
  for (const [key, property] of staged) if (!twin.has(key)) count(key, property);
  if (live > max) {
    throw new TwinError(400, `Update rejected: ${deviceId} would have ${live} properties its DeviceModel does not define, over the limit of ${max} (twin.maxExtraProperties)`);
  }
  const excess = live + tombstones.length - max;
  if (excess <= 0) return [];
  return tombstones
    .sort((a, b) => a.deletedAt - b.deletedAt)
    .slice(0, excess)
    .map((t) => t.key);
}

/**
 * The twin as `twin/get` answers it (deleted keys left out), refused (413) as soon as its JSON
 * passes `maxBytes`: a twin grown too large is never built or sent whole.
 */
export function boundedDocument(deviceId: string, twin: ReadonlyMap<string, TwinProperty>, maxBytes: number): Record<string, MsgTwin> {
  const document: Record<string, MsgTwin> = {};
  let bytes = 2;
  for (const [key, property] of twin) {
    if (property.type === DELETED) continue;
    const entry = toMsgTwin(property);
    bytes += Buffer.byteLength(JSON.stringify(key)) + Buffer.byteLength(JSON.stringify(entry)) + 2;
    if (bytes > maxBytes) throw new TwinError(413, `the twin of ${deviceId} is larger than ${maxBytes} bytes (twin.maxGetBytes)`);
    document[key] = entry;
  }
  return document;
}
