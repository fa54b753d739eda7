/** Finding QEMU processes a test left behind: none may outlive the agent that ran them. */
import { execFileSync } from 'node:child_process';

/** The command lines of live QEMU processes with `path` on them. */
export function qemuUnder(path: string): string[] {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('qemu-system') && line.includes(path));
}
