/**
 * What a reload keeps that the files did not give. A device leaves only when its file was read
 * fine and no longer defines it: a profile file or directory that cannot be read (missing for a
 * moment, unreadable, a dangling link) or a file with an invalid document keeps the devices it
 * gave before, as they were, rather than dropping their twins and history and seeding them
 * afresh when the file is back.
 */
import { isAbsolute, relative, sep } from 'node:path';
import type { Catalog } from './load.js';
import type { Device } from './model.js';

function isWithin(path: string, file: string): boolean {
  const rel = relative(path, file);
  return rel === '' || (!isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/** Read whole, and every document in it valid. */
function wasReadFine(catalog: Catalog, file: string): boolean {
  return !catalog.unread.some((path) => isWithin(path, file)) && !catalog.errors.some((error) => error.file === file);
}

/** Puts back into `next` the devices of `before` (with their models) whose file was not read fine; returns them. */
export function keepUnreadDevices(before: Catalog, next: Catalog): Device[] {
  const kept: Device[] = [];
  for (const [id, device] of before.devices) {
    if (next.devices.has(id) || wasReadFine(next, device.source.file)) continue;
    next.devices.set(id, device);
    const model = before.models.get(device.modelId);
    if (model && !next.models.has(model.id)) next.models.set(model.id, model);
    kept.push(device);
  }
  return kept;
}

/**
 * Whether every profile was read and every document is valid: only then can a device the twin
 * holds but no loaded profile defines (one last seen before a restart) be known to be gone.
 */
export function isComplete(catalog: Catalog): boolean {
  return catalog.unread.length === 0 && catalog.errors.length === 0;
}
