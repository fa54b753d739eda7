/**
 * What a slave's register map lacks: addresses that answered a Modbus exception. Meters leave
 * holes in their maps; a merged read that spans one fails whole, so the planner never bridges
 * an address it learned here, and the neighbours keep being read together around it.
 */
import type { RegisterType } from './types.js';

/** Exceptions that say "not here" (2 illegal data address, 3 illegal data value, 4 device failure), not "not now". */
export const GAP_EXCEPTIONS: ReadonlySet<number> = new Set([2, 3, 4]);

export class RegisterGaps {
  /** `${slaveId}:${register}` → addresses that raised an exception. */
  private readonly known = new Map<string, Set<number>>();

  learn(slaveId: number, register: RegisterType, start: number, length: number): void {
    const key = `${slaveId}:${register}`;
    const set = this.known.get(key) ?? new Set<number>();
    for (let a = start; a < start + length; a++) set.add(a);
    this.known.set(key, set);
  }

  /** Whether [start, start + length) holds an address that raised an exception. */
  spans(slaveId: number, register: RegisterType, start: number, length: number): boolean {
    const set = this.known.get(`${slaveId}:${register}`);
    if (!set) return false;
    for (let a = start; a < start + length; a++) if (set.has(a)) return true;
    return false;
  }
}
