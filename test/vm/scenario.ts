/** For scripts that run in the VM and leave their outcome in a file the host reads back. */
import { writeFileSync } from 'node:fs';

export function writeResult(name: string, result: unknown): void {
  writeFileSync(`${process.env.VM_IO ?? '/tmp'}/${name}.json`, JSON.stringify(result, null, 2));
}

export interface Scenario {
  /** What the scenario observed; `error` once it failed. */
  result: Record<string, unknown>;
  /** Names the step now running, in the log and in the result of a scenario that times out. */
  step(name: string): void;
}

/**
 * A scenario that writes its result as `<name>.json` even when it hangs: after `timeoutMs` the
 * result says in which step, and what it was waiting for (`result.waitingFor`, `result.lastSeen`).
 */
export function startScenario(name: string, timeoutMs: number): Scenario {
  const result: Record<string, unknown> = {};
  setTimeout(() => {
    const waiting = result.waitingFor === undefined ? '' : ` waiting for ${String(result.waitingFor)}: last seen ${JSON.stringify(result.lastSeen)}`;
    result.error = `scenario timed out in step ${String(result.lastStep)}${waiting}`;
    writeResult(name, result);
    process.exit(1);
  }, timeoutMs).unref();
  return {
    result,
    step(step: string) {
      result.lastStep = step;
      console.error(`scenario: ${step}`);
    },
  };
}
