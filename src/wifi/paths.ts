/**
 * Where the agent's own connections leave from. With WiFi enabled, the kinds of traffic named in
 * `wifi.sensitive` (the cloud link, the peer channel, the migration stream) leave only from the
 * address of a trusted identity; with none associated they wait, or with `wifi.fallback: any`
 * take any identity (or the system's routes when there is none). A choice sticks while its
 * identity keeps its AP and address, so connections move only when they must; every change is
 * announced, and open connections move (reconnect from the new address) on it.
 */
import type { Remove } from '../module.js';
import { kernelHasMptcp } from '../mptcp.js';
import { destinationRulePriority, routeDestination, unrouteDestination } from './addressing.js';
import { TRAFFIC, type Traffic, type WifiConfig } from './config.js';

/** A connected identity that traffic could leave through. */
export interface PathCandidate {
  identity: string;
  /** Its own address, to bind to; absent where the system's routes pick it (NetworkManager's one connection). */
  address?: string;
  /** Its routing table: for connections that cannot bind (QEMU's migration stream), a rule sends them there. */
  table?: number;
  trusted: boolean;
  score: number;
}

export type Placement =
  /** Not placed: the routing tables decide (WiFi off, or traffic not named sensitive). */
  | { via: 'system' }
  | { via: 'identity'; identity: string; address?: string; table?: number; trusted: boolean }
  /** Waiting for a usable identity, and why there is none. */
  | { via: 'none'; reason: string };

/** What the WiFi module knows at the moment: the usable identities, or why there are none. */
export type PathSupply = { candidates: PathCandidate[] } | { unavailable: string };

/** A stream that cannot bind its source (QEMU's migration stream), steered onto its path by a routing rule. */
export interface Steering {
  placement: Placement;
  /** Open it as MPTCP: the kernel adds a subflow over each of `subflows` (trusted identities with an MPTCP endpoint). */
  mptcp: boolean;
  subflows: string[];
  /** Takes the routing rule back. */
  release(): Promise<void>;
}

/** How the agent's connections ask where to leave from; `systemPaths` when nothing places them. */
export interface PathPlacer {
  place(traffic: Traffic): Placement;
  onChange(listener: () => void): Remove;
  whenPlaced(traffic: Traffic, timeoutMs: number): Promise<Placement>;
  /** Routes `destination` (an address) through the placement of `traffic` until released. */
  steer(traffic: Traffic, destination: string): Promise<Steering>;
}

export const systemPaths: PathPlacer = {
  place: () => ({ via: 'system' }),
  onChange: () => () => undefined,
  whenPlaced: async () => ({ via: 'system' }),
  steer: async () => ({ placement: { via: 'system' }, mptcp: false, subflows: [], release: async () => undefined }),
};

export class PathError extends Error {}

export class TrafficPaths implements PathPlacer {
  private readonly placements = new Map<Traffic, Placement>();
  private readonly listeners = new Set<() => void>();
  private supply: PathSupply = { unavailable: 'WiFi is starting' };

  /** Routing rules steering streams, by `<destination> <table>`, with how many streams use each. */
  private readonly rules = new Map<string, number>();

  constructor(private readonly config: Pick<WifiConfig, 'enabled' | 'sensitive' | 'fallback' | 'mptcp' | 'routingTableBase'>) {
    this.decide();
  }

  place(traffic: Traffic): Placement {
    return this.placements.get(traffic)!;
  }

  state(): Record<Traffic, Placement> {
    return Object.fromEntries(TRAFFIC.map((traffic) => [traffic, this.place(traffic)])) as Record<Traffic, Placement>;
  }

  /** Trusted identities with an address of their own: a pooled (MPTCP) stream takes a subflow over each. */
  pool(): PathCandidate[] {
    return 'candidates' in this.supply ? this.supply.candidates.filter((c) => c.trusted && c.address !== undefined) : [];
  }

  onChange(listener: () => void): Remove {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called by the WiFi module on each change of its identities. */
  update(supply: PathSupply): void {
    this.supply = supply;
    if (this.decide()) for (const listener of [...this.listeners]) listener();
  }

  /** The placement of `traffic` once it has one, or a PathError naming why after `timeoutMs`. */
  async whenPlaced(traffic: Traffic, timeoutMs: number): Promise<Placement> {
    const now = this.place(traffic);
    if (now.via !== 'none') return now;
    return new Promise((resolve, reject) => {
      const done = (settle: () => void) => {
        clearTimeout(timer);
        remove();
        settle();
      };
      const remove = this.onChange(() => {
        const placement = this.place(traffic);
        if (placement.via !== 'none') done(() => resolve(placement));
      });
      const timer = setTimeout(() => {
        const placement = this.place(traffic);
        done(() => reject(new PathError(`no path for ${traffic} traffic after ${timeoutMs} ms: ${placement.via === 'none' ? placement.reason : 'unknown'}`)));
      }, timeoutMs);
    });
  }

  async steer(traffic: Traffic, destination: string): Promise<Steering> {
    const placement = this.place(traffic);
    localAddressOf(placement, traffic);
    const subflows = placement.via === 'identity' && placement.address !== undefined && this.config.mptcp ? this.pool().map((c) => c.identity) : [];
    const mptcp = subflows.length > 0 && kernelHasMptcp();
    if (placement.via !== 'identity' || placement.table === undefined) return { placement, mptcp, subflows, release: async () => undefined };
    const { table } = placement;
    const priority = destinationRulePriority(this.config.routingTableBase);
    const key = `${destination} ${table}`;
    const users = this.rules.get(key) ?? 0;
    if (users === 0) await routeDestination(destination, table, priority);
    this.rules.set(key, users + 1);
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      const left = this.rules.get(key)! - 1;
      if (left > 0) return void this.rules.set(key, left);
      this.rules.delete(key);
      await unrouteDestination(destination, table, priority);
    };
    return { placement, mptcp, subflows, release };
  }

  /** Recomputes every placement; true when one changed. */
  private decide(): boolean {
    let changed = false;
    for (const traffic of TRAFFIC) {
      const next = this.choose(traffic, this.placements.get(traffic));
      if (JSON.stringify(next) === JSON.stringify(this.placements.get(traffic))) continue;
      this.placements.set(traffic, next);
      changed = true;
    }
    return changed;
  }

  private choose(traffic: Traffic, previous: Placement | undefined): Placement {
    const { enabled, sensitive, fallback } = this.config;
    if (!enabled || !sensitive.includes(traffic)) return { via: 'system' };
    if ('unavailable' in this.supply) return fallback === 'any' ? { via: 'system' } : { via: 'none', reason: this.supply.unavailable };
    const { candidates } = this.supply;
    const trusted = candidates.filter((c) => c.trusted);
    const pool = trusted.length > 0 || fallback === 'wait' ? trusted : candidates;
    if (pool.length === 0) {
      if (fallback === 'any') return { via: 'system' };
      const open = candidates.length > 0 ? ` (${candidates.length} untrusted one(s) are; wifi.fallback: any would use them)` : '';
      return { via: 'none', reason: `no trusted WiFi identity is associated${open}` };
    }
    // The identity in use stays while it keeps its address: moving costs a reconnect.
    const kept = previous?.via === 'identity' ? pool.find((c) => c.identity === previous.identity && c.address === previous.address) : undefined;
    const best = kept ?? pool.reduce((a, b) => (b.score > a.score ? b : a));
    return { via: 'identity', identity: best.identity, ...(best.address === undefined ? {} : { address: best.address }), ...(best.table === undefined ? {} : { table: best.table }), trusted: best.trusted };
  }
}

/** The address a connection of `traffic` binds to: undefined for the system's choice; a PathError while there is no path. */
export function localAddressOf(placement: Placement, traffic: Traffic): string | undefined {
  if (placement.via === 'none') throw new PathError(`no path for ${traffic} traffic: ${placement.reason}`);
  return placement.via === 'identity' ? placement.address : undefined;
}
