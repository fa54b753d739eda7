/**
 * The start check of a database file: SQLite must read it as a database and `PRAGMA quick_check`
 * must find no damage (bit rot, a torn or truncated write, a header overwritten). A damaged file
 * is moved aside with its -wal and -shm files, kept for inspection, so the owner starts on a new,
 * empty one instead of failing at every start.
 */
import BetterSqlite3 from 'better-sqlite3';
import { existsSync, renameSync } from 'node:fs';

export interface Damage {
  /** What SQLite or quick_check said. */
  reason: string;
  /** Where the damaged file is now; its -wal and -shm files beside it under the same name. */
  movedTo: string;
}

/** Errors SQLite gives for a file that is not (or no longer) a readable database. */
const DAMAGE_CODES = /^SQLITE_(CORRUPT|NOTADB)/;

/** The first problem SQLite finds in `file`, or undefined when it reads as a sound database. */
function findDamage(file: string): string | undefined {
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new BetterSqlite3(file);
    // The first error is reason enough; a badly damaged file could list hundreds.
    const result = db.pragma('quick_check(1)', { simple: true });
    return result === 'ok' ? undefined : String(result).replace(/\s*\n\s*/g, ' ');
  } catch (error) {
    if (error instanceof BetterSqlite3.SqliteError && DAMAGE_CODES.test(error.code)) return error.message;
    throw error;
  } finally {
    // The last connection to close checkpoints the WAL into the file: a power cut's WAL ends here.
    db?.close();
  }
}

/** Checks `file`; when damaged, moves it and its -wal and -shm files aside and says where. */
export function checkDatabaseFile(file: string): Damage | undefined {
  const reason = findDamage(file);
  if (reason === undefined) return undefined;
  const movedTo = `${file}.damaged-${new Date().toISOString().replace(/[-:]|\.\d+/g, '')}`;
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
  }
  return { reason, movedTo };
}
