/**
 * Poll planning: the registers of one slave that lie close together are read in one request.
 * Reading a few unused registers in a gap costs less than another request round trip, unless
 * the gap holds an address the slave answers with an exception (`avoid`): then it is not bridged.
 */
import type { RegisterType, Visitor } from './types.js';

/** Modbus limits per request: 125 registers, 2000 bits (Modbus application protocol 6.1–6.4). */
const MAX_SPAN: Record<RegisterType, number> = { HoldingRegister: 125, InputRegister: 125, CoilRegister: 2000, DiscreteInputRegister: 2000 };
/** Unused registers a request may span to join two neighbours. */
const MAX_GAP: Record<RegisterType, number> = { HoldingRegister: 8, InputRegister: 8, CoilRegister: 64, DiscreteInputRegister: 64 };

export interface ReadBlock<T> {
  register: RegisterType;
  start: number;
  length: number;
  members: Array<{ item: T; visitor: Visitor }>;
}

export function planReads<T>(
  items: Array<{ item: T; visitor: Visitor }>,
  avoid: (register: RegisterType, start: number, length: number) => boolean = () => false,
): Array<ReadBlock<T>> {
  const blocks: Array<ReadBlock<T>> = [];
  const byRegister = new Map<RegisterType, Array<{ item: T; visitor: Visitor }>>();
  for (const entry of items) {
    const list = byRegister.get(entry.visitor.register) ?? [];
    list.push(entry);
    byRegister.set(entry.visitor.register, list);
  }
  for (const [register, entries] of byRegister) {
    entries.sort((a, b) => a.visitor.offset - b.visitor.offset);
    let current: ReadBlock<T> | undefined;
    for (const entry of entries) {
      const end = entry.visitor.offset + entry.visitor.limit;
      const length = current ? Math.max(end, current.start + current.length) - current.start : 0;
      const fits =
        current &&
        entry.visitor.offset - (current.start + current.length) <= MAX_GAP[register] &&
        length <= MAX_SPAN[register] &&
        !avoid(register, current.start, length);
      if (current && fits) {
        current.length = length;
        current.members.push(entry);
      } else {
        current = { register, start: entry.visitor.offset, length: entry.visitor.limit, members: [entry] };
        blocks.push(current);
      }
    }
  }
  return blocks;
}
