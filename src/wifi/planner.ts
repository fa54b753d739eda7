/**
 * Which identity goes to which AP. Each identity gets an AP of its own (pooling needs distinct
 * APs); the APs used may span at most as many channels as the radio can be on at once. The AP
 * set with the most useful airtime wins, but what is in use now gets a bonus (the hysteresis),
 * so the radio does not flap between channels or APs of nearly equal worth.
 */
import { byCodeUnits } from '../compare.js';

export interface Candidate {
  bssid: string;
  channel: number;
  score: number;
  trusted: boolean;
}

export interface PlanInput {
  identities: string[];
  candidates: Candidate[];
  /** identity → the BSSID it is associated with now. */
  current: ReadonlyMap<string, string>;
  /** Channels the radio can be on at once. */
  channels: number;
  /** 0.2: a new set of APs must be 20% better than the one in use to replace it. */
  hysteresis: number;
}

/** identity → BSSID; identities without an AP are absent. */
export type Plan = Map<string, string>;

function combinations<T>(items: T[], size: number): T[][] {
  if (size === 0) return [[]];
  return items.flatMap((item, index) => combinations(items.slice(index + 1), size - 1).map((rest) => [item, ...rest]));
}

/** The best `count` APs on `channels`, with at least one trusted AP when one is there to take. */
function pick(candidates: Candidate[], channels: Set<number>, count: number): Candidate[] {
  const eligible = candidates.filter((c) => channels.has(c.channel));
  const chosen = eligible.slice(0, count);
  if (chosen.length > 0 && !chosen.some((c) => c.trusted)) {
    const trusted = eligible.find((c) => c.trusted);
    if (trusted) chosen[chosen.length - 1] = trusted;
  }
  return chosen;
}

export function plan({ identities, candidates, current, channels, hysteresis }: PlanInput): Plan {
  const inUse = new Set(current.values());
  const weight = (c: Candidate) => (inUse.has(c.bssid) ? c.score * (1 + hysteresis) : c.score);
  const ranked = [...candidates].sort((a, b) => weight(b) - weight(a) || byCodeUnits(a.bssid, b.bssid));
  const allChannels = [...new Set(ranked.map((c) => c.channel))];

  // A set with a trusted AP beats any set without one: sensitive traffic needs somewhere to go.
  let best: Candidate[] = [];
  let bestRank = [-1, -1];
  for (let size = 1; size <= Math.min(channels, allChannels.length); size++) {
    for (const set of combinations(allChannels, size)) {
      const chosen = pick(ranked, new Set(set), identities.length);
      const rank = [chosen.some((c) => c.trusted) ? 1 : 0, chosen.reduce((sum, c) => sum + weight(c), 0)];
      if (rank[0]! > bestRank[0]! || (rank[0] === bestRank[0] && rank[1]! > bestRank[1]!)) [best, bestRank] = [chosen, rank];
    }
  }

  const result: Plan = new Map();
  const free = new Set(best.map((c) => c.bssid));
  for (const identity of identities) {
    const bssid = current.get(identity);
    if (bssid && free.delete(bssid)) result.set(identity, bssid);
  }
  const remaining = best.filter((c) => free.has(c.bssid));
  for (const identity of identities) {
    if (result.has(identity)) continue;
    const next = remaining.shift();
    if (next) result.set(identity, next.bssid);
  }
  return result;
}
