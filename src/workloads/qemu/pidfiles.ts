/**
 * The QEMU processes this agent started, one pidfile each in its data dir (`<pidDir>/<id>.pid`),
 * written once QEMU runs and removed once it is gone: what a killed agent leaves there is what
 * it left running. A pid alone could name another process by now (pids are reused), so the file
 * also holds the boot and the process's start time, and only a QEMU matching both is ended.
 * The run dir is no guide: two agents may share it, and neither may end the other's guests.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import type { Logger } from '../../log.js';
import { writeSecretFile } from '../../secret-file.js';

/** How long a QEMU killed at start is waited for: until then it may still hold a published port. */
const GONE_TIMEOUT_MS = 5000;
const GONE_POLL_MS = 20;

const PidfileSchema = v.object({ pid: v.pipe(v.number(), v.integer(), v.minValue(1)), bootId: v.string(), startTicks: v.number() });
type Pidfile = v.InferOutput<typeof PidfileSchema>;

const pidfileOf = (pidDir: string, id: string) => join(pidDir, `${id}.pid`);

/** Records that this agent started QEMU `pid` for guest `id`. */
export function recordStarted(pidDir: string, id: string, pid: number): void {
  const stat = processStat(pid);
  // Gone already (it refused its options): nothing to end later.
  if (!stat) return;
  mkdirSync(pidDir, { recursive: true, mode: 0o700 });
  writeSecretFile(pidfileOf(pidDir, id), JSON.stringify({ pid, bootId: bootId(), startTicks: stat.startTicks } satisfies Pidfile));
}

/** Its QEMU ended: nothing of guest `id` is left to end. */
export function forgetStarted(pidDir: string, id: string): void {
  rmSync(pidfileOf(pidDir, id), { force: true });
}

/** Ends the QEMUs a killed run of this agent left behind (they outlive it), each found by its pidfile, and waits until they are gone. */
export async function endLeftovers(pidDir: string, log: Logger): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(pidDir).filter((file) => file.endsWith('.pid'));
  } catch {
    return;
  }
  for (const file of files) {
    const path = join(pidDir, file);
    const recorded = readPidfile(path);
    if (recorded && isOurs(recorded)) {
      log.warn({ pid: recorded.pid, guest: file.slice(0, -'.pid'.length) }, 'QEMU left by a previous run of the agent ended');
      await kill(recorded);
    }
    rmSync(path, { force: true });
  }
}

function readPidfile(path: string): Pidfile | undefined {
  try {
    return v.parse(PidfileSchema, JSON.parse(readFileSync(path, 'utf8')));
  } catch {
    return undefined;
  }
}

/** Still the process the pidfile names (same boot, same start time) and still QEMU. */
function isOurs(recorded: Pidfile): boolean {
  const now = processStat(recorded.pid);
  if (!now || recorded.bootId !== bootId() || now.startTicks !== recorded.startTicks) return false;
  try {
    const program = readFileSync(`/proc/${recorded.pid}/cmdline`, 'utf8').split('\0')[0]!;
    return program.split('/').pop()!.startsWith('qemu-system');
  } catch {
    return false;
  }
}

async function kill(recorded: Pidfile): Promise<void> {
  try {
    process.kill(recorded.pid, 'SIGKILL');
  } catch {
    return;
  }
  // Not this agent's child any more, so no exit event: its /proc entry goes, or stays a zombie nobody reaps.
  const deadline = performance.now() + GONE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const now = processStat(recorded.pid);
    if (!now || now.startTicks !== recorded.startTicks || now.state === 'Z') return;
    await sleep(GONE_POLL_MS);
  }
}

/** Which boot this is: start times count from it. */
function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), which tells it from a later one with its pid, and its state (field 3). */
function processStat(pid: number): { startTicks: number; state: string } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2, the program name, is in parentheses and may hold spaces and parentheses itself.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { startTicks: Number(fields[19]), state: fields[0]! };
}
