/**
 * How much useful airtime an AP would give us, in Mbit/s (the MultiWiFi idea: prefer the AP
 * that uses the air better, not just the loudest one). Three factors:
 * - the transmit rate: measured on a live link, else expected from the signal;
 * - the share of the channel left to us, from the AP's BSS Load element (channel utilization);
 * - the delivery ratio: every retry and failed frame costs airtime without delivering.
 */
import type { TxStats } from './radio.js';

/** Receive sensitivity of 802.11g/n rates (dBm → Mbit/s), as radios typically need them. */
const RATE_BY_SIGNAL: ReadonlyArray<readonly [number, number]> = [
  [-65, 54],
  [-66, 48],
  [-70, 36],
  [-74, 24],
  [-77, 18],
  [-79, 12],
  [-81, 9],
  [-82, 6],
  [-90, 1],
];

export function expectedRate(signal: number): number {
  return RATE_BY_SIGNAL.find(([threshold]) => signal >= threshold)?.[1] ?? 0;
}

export interface BssLoad {
  stations: number;
  /** 0..255, the fraction of time the AP sensed the channel busy. */
  utilization: number;
}

/** The BSS Load element (ID 11) from the IEs wpa_supplicant reports as hex in `BSS <bssid>`. */
export function parseBssLoad(iesHex: string): BssLoad | undefined {
  const ies = Buffer.from(iesHex, 'hex');
  for (let at = 0; at + 2 <= ies.length; at += 2 + ies[at + 1]!) {
    if (ies[at] === 11 && ies[at + 1]! >= 5) return { stations: ies.readUInt16LE(at + 2), utilization: ies[at + 4]! };
  }
  return undefined;
}

export function deliveryRatio(stats: TxStats | undefined): number {
  if (!stats) return 1;
  const attempts = stats.txPackets + stats.txRetries + stats.txFailed;
  return attempts === 0 ? 1 : stats.txPackets / attempts;
}

export interface ScoreInput {
  signal: number;
  load?: BssLoad;
  /** Statistics of our live link to this AP, when there is one. */
  stats?: TxStats;
}

export function airtimeScore({ signal, load, stats }: ScoreInput): number {
  const rate = stats && stats.txBitrate > 0 ? stats.txBitrate : expectedRate(signal);
  const share = load ? 1 - load.utilization / 255 : 1;
  return rate * share * deliveryRatio(stats);
}
