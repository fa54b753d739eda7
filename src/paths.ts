/**
 * Where the agent keeps its files: the data dir (databases and keys, kept across restarts) and
 * the run dir (sockets and helper scripts, gone at reboot). Both are private to the agent's user
 * (private-dirs.ts).
 */
import { isAbsolute, join } from 'node:path';

/** The twin's database: devices and their twins, the cloud's objects, the outbox. */
export const twinDatabase = (dataDir: string) => join(dataDir, 'twin.db');

/** The CA, certificate and key CloudCore issued to this node. */
export const cloudDir = (dataDir: string) => join(dataDir, 'cloud');

/**
 * The run dir when the config names none: root's is /run/edge-agent; another user's is inside
 * their runtime dir ($XDG_RUNTIME_DIR: theirs and 0700 by the XDG spec, which also says to
 * ignore a relative one), else /tmp/edge-agent-<uid>, a name anyone can take first, which is why
 * `makeRunDirPrivate` checks whose it is before the agent uses it.
 */
export function defaultRunDir(uid: number | undefined, env: NodeJS.ProcessEnv): string {
  if (uid === 0) return '/run/edge-agent';
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime && isAbsolute(runtime)) return join(runtime, 'edge-agent');
  return `/tmp/edge-agent-${uid ?? 0}`;
}

/** Where mappers find the DMI socket when the config names none: EdgeCore's place as root, the run dir otherwise. */
export function defaultDmiSocket(uid: number | undefined, runDir: string): string {
  return uid === 0 ? '/etc/kubeedge/dmi.sock' : join(runDir, 'dmi.sock');
}
