/** Keys and certificates on disk: mode 0600, and a crash leaves the old file or the new one, never part of one. */
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function writeSecretFile(path: string, data: string): void {
  const temp = `${path}.tmp`;
  const file = openSync(temp, 'w', 0o600);
  try {
    fchmodSync(file, 0o600);
    writeFileSync(file, data);
    fsyncSync(file);
  } finally {
    closeSync(file);
  }
  renameSync(temp, path);
  // The rename itself must reach the disk too.
  const directory = openSync(dirname(path), 'r');
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
}
