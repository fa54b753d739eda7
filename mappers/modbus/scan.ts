/**
 * `edge-agent modbus scan`: what answers on an unknown line, to write a profile from. Each unit
 * id is asked for one register; those that answer (with data or an exception) are asked for
 * their device identification (FC43/MEI 0x0E, basic objects) and probed for holding and input
 * registers in blocks, a block answered with an exception split in halves down to single
 * registers. Bounded by a total deadline: what was found by then is reported, marked incomplete.
 */
import type { ModbusRTU as Client } from 'modbus-serial/ModbusRTU.js';
import { isException, ModbusLine } from './line.js';
import type { Transport } from './types.js';

/** Registers per probe: the most one read may ask for (Modbus application protocol 6.3). */
const BLOCK = 125;
/** FC43's basic objects, by object id (Modbus application protocol 6.21). */
const IDENTIFICATION = ['VendorName', 'ProductCode', 'MajorMinorRevision'] as const;

export interface ScanOptions {
  transport: Transport;
  /** Unit ids to try, inclusive. */
  units: [number, number];
  /** Register addresses (0-based) to probe, inclusive. */
  registers: [number, number];
  /** Per request; a request that times out is tried once more (the line's rule). */
  timeoutMs: number;
  /** For the whole scan. */
  deadlineMs: number;
  progress?(message: string): void;
}

/** Address ranges that answered, inclusive: `[[0, 9], [20, 199]]`. */
export type Ranges = Array<[number, number]>;

export interface UnitScan {
  unit: number;
  identification?: Partial<Record<(typeof IDENTIFICATION)[number], string>>;
  holdingRegisters: Ranges;
  inputRegisters: Ranges;
}

export interface ScanResult {
  units: UnitScan[];
  /** False when the deadline cut the scan short. */
  complete: boolean;
}

class DeadlineReached extends Error {}


export async function scanModbus(options: ScanOptions): Promise<ScanResult> {
  const line = new ModbusLine(options.transport);
  const endAt = performance.now() + options.deadlineMs;
  const units: UnitScan[] = [];
  const ask = async <T>(unit: number, send: (client: Client) => Promise<T>): Promise<T> => {
    if (performance.now() >= endAt) throw new DeadlineReached();
    return line.request(unit, options.timeoutMs, send);
  };
  try {
    for (let unit = options.units[0]; unit <= options.units[1]; unit++) {
      options.progress?.(`unit ${unit} of ${options.units[0]}-${options.units[1]}, ${units.length} found`);
      const present = await ask(unit, (client) => client.readHoldingRegisters(options.registers[0], 1)).then(
        () => true,
        (error: unknown) => {
          if (error instanceof DeadlineReached) throw error;
          return isException(error); // an exception is an answer too: the unit is there
        },
      );
      if (!present) continue;
      const found: UnitScan = { unit, holdingRegisters: [], inputRegisters: [] };
      units.push(found);
      found.identification = await ask(unit, (client) => client.readDeviceIdentification(1, 0)).then(
        ({ data }) => Object.fromEntries(IDENTIFICATION.flatMap((name, id) => (data[id] ? [[name, data[id]]] : []))),
        (error: unknown) => {
          if (error instanceof DeadlineReached) throw error;
          return undefined; // FC43 is optional: many meters answer exception 1 (illegal function)
        },
      );
      for (const [key, read] of [
        ['holdingRegisters', (start: number, count: number) => ask(unit, (client) => client.readHoldingRegisters(start, count))],
        ['inputRegisters', (start: number, count: number) => ask(unit, (client) => client.readInputRegisters(start, count))],
      ] as const) {
        options.progress?.(`unit ${unit}: ${key === 'holdingRegisters' ? 'holding' : 'input'} registers`);
        await probe(options.registers, read, found[key]);
      }
    }
    return { units, complete: true };
  } catch (error) {
    if (error instanceof DeadlineReached) return { units, complete: false };
    throw error;
  } finally {
    line.close();
  }
}

/** Adds the answering ranges of [first, last] to `ranges`, in order, adjacent ones joined. */
async function probe(registers: [number, number], read: (start: number, count: number) => Promise<unknown>, ranges: Ranges): Promise<void> {
  const answered = (start: number, end: number) => {
    const last = ranges.at(-1);
    if (last && last[1] + 1 === start) last[1] = end;
    else ranges.push([start, end]);
  };
  const block = async (start: number, count: number): Promise<void> => {
    try {
      await read(start, count);
      answered(start, start + count - 1);
    } catch (error) {
      if (error instanceof DeadlineReached) throw error;
      if (count === 1 || !isException(error)) return;
      const half = Math.ceil(count / 2);
      await block(start, half);
      await block(start + half, count - half);
    }
  };
  for (let start = registers[0]; start <= registers[1]; start += BLOCK) await block(start, Math.min(BLOCK, registers[1] - start + 1));
}
