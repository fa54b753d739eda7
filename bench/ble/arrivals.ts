/**
 * The line protocol between bench/ble/guest.ts and its subscriber processes: the subscriber
 * prints `{"ready":true}` once it listens, then one `{"received":[[seq, ns], …]}` line with what
 * arrived since the last one for every line on its stdin, and ends itself when stdin closes.
 */
import { createInterface } from 'node:readline';

/** Sequence number and arrival time (process.hrtime.bigint(), ns, as a string) of each value. */
export type Arrivals = Array<[number, string]>;

export function serveArrivals(take: () => Arrivals, end: () => Promise<void>): void {
  console.log(JSON.stringify({ ready: true }));
  createInterface({ input: process.stdin })
    .on('line', () => console.log(JSON.stringify({ received: take() })))
    // noble keeps its HCI socket open: nothing else would end the process.
    .on('close', () => void end().finally(() => process.exit(0)));
}

/** Where the benchmark's values come from: bytes 2 (LSB) and 3 (MSB) of the temperature data, where the ambient temperature would be. */
export const SEQUENCE_BYTES = { startIndex: 3, endIndex: 2 };
