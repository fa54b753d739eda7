/**
 * When a commit reaches the disk (SQLite's `synchronous` in WAL mode). Apart from the engine so
 * the config can name the modes without loading SQLite.
 *
 * `full`: every commit is synced before the writes in it are acknowledged, so they survive a
 * power cut; group commit makes that one sync per batch, not per write. `normal`: the WAL is
 * synced only at checkpoints, which is faster on slow storage (SD cards), but a power cut can
 * take back the last acknowledged commits (a killed process cannot).
 */
export const SYNCHRONOUS_MODES = ['full', 'normal'] as const;
export type Synchronous = (typeof SYNCHRONOUS_MODES)[number];
