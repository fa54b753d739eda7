/**
 * The agent's two directories, private to its user: the data dir holds the twin (cloud Device
 * objects, whose MQTT configData may carry a broker password) and the cloud key; the run dir
 * holds the sockets the agent talks to and a script the DHCP client runs.
 */
import { chmodSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { ConfigError } from './errors.js';

const GROUP_OR_OTHER = 0o077;

/** Creates a directory of the agent's own 0700, or narrows an existing one to 0700 (earlier versions left the data dir 0755). */
export function makeDirPrivate(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & GROUP_OR_OTHER) !== 0) chmodSync(dir, 0o700);
}

/**
 * Creates the run dir 0700, or takes an existing one only if it is a directory (not a symlink)
 * of this user that no one else may enter. Anything else is refused rather than repaired: a
 * directory someone else owns (they may have made /tmp/edge-agent-<uid> before the agent did)
 * stays theirs to open up again, and one that others could write to may already hold their
 * socket or script under the names the agent uses.
 */
export function makeRunDirPrivate(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const found = lstatSync(dir);
  const uid = process.getuid?.();
  const fix = 'remove it, or set runDir to a directory of your own with mode 0700';
  if (!found.isDirectory()) throw new ConfigError(`runDir ${dir} is not a directory (a symlink?): ${fix}`);
  if (found.uid !== uid) throw new ConfigError(`runDir ${dir} belongs to uid ${found.uid}, not to this user (uid ${uid}): ${fix}`);
  if ((found.mode & GROUP_OR_OTHER) !== 0) {
    const mode = (found.mode & 0o777).toString(8).padStart(4, '0');
    throw new ConfigError(`runDir ${dir} is open to group or others (mode ${mode}): chmod 700 ${dir}, or ${fix}`);
  }
}
