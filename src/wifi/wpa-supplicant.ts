/**
 * Several WiFi identities on one radio (MultiWiFi): each a virtual station interface with its
 * own MAC, driven by wpa_supplicant, associated to its own AP. A reconcile round scans, scores
 * the APs by useful airtime, plans identities onto APs within the radio's channel capacity
 * (with hysteresis), and carries the plan out; losing an AP starts a round at once.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { applyLease, clearDestinationRules, destinationRulePriority, DhcpClient, releaseLease, setMptcpLimits, type RouteSlot } from './addressing.js';
import { isTrusted, type NetworkConfig, type WifiConfig } from './config.js';
import type { PathCandidate } from './paths.js';
import { plan } from './planner.js';
import { addStationInterface, deleteInterface, identityMac, interfaceExists, radioCapabilities, RadioError, resolveRadio, txStats, type RadioCapabilities, type TxStats } from './radio.js';
import { airtimeScore, parseBssLoad, type BssLoad } from './scoring.js';
import { channelOf, ConnectError, Station, type ScanEntry } from './station.js';
import type { ApState, IdentityState, WifiState } from './state.js';
import { Supplicant } from './supplicant.js';

interface Identity extends IdentityState {
  station: Station;
  slot: RouteSlot;
  dhcp: DhcpClient;
  /** Counters at the last poll, to see what the link did since. */
  counters?: TxStats;
  /** Transmit statistics of the last poll interval, when the link carried enough traffic to judge it. */
  stats?: TxStats;
  /** When the identity lost its AP (monotonic, performance.now()), for the recovery time. */
  lostAt?: number;
}

interface KnownAp {
  entry: ScanEntry;
  network: NetworkConfig;
  load?: BssLoad;
  /** Monotonic (performance.now()), so a wall-clock step neither ends nor stretches the avoidance; shown as epoch ms. */
  avoidedUntil?: number;
  /** Set when the AP cannot work with our config (wrong passphrase); it is avoided until the config changes. */
  error?: string;
}

/** Below this many frames in a poll interval, the link's measured rate and retries are not used. */
const MIN_PACKETS_TO_JUDGE = 50;

function matches(network: NetworkConfig, entry: ScanEntry): boolean {
  if (network.ssid !== entry.ssid) return false;
  return network.passphrase === undefined ? entry.security === 'open' : entry.security === 'wpa-psk';
}

export class WpaWifiManager extends EventEmitter<{ changed: [WifiState] }> {
  private readonly aps = new Map<string, KnownAp>();
  /** When the last scan ended, on monotonic time (performance.now()); -Infinity before the first. */
  private lastScanAt = Number.NEGATIVE_INFINITY;
  private rounds: Promise<void> = Promise.resolve();
  private roundQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastSwitch: WifiState['lastSwitch'];
  private lastRecoveryMs: number | undefined;
  /** Set when an association failed, so the next round comes soon rather than at the next evaluation. */
  private retrySoon = false;

  private constructor(
    private readonly config: WifiConfig,
    private readonly capabilities: RadioCapabilities,
    private readonly supplicant: Supplicant,
    private readonly identities: Identity[],
    private readonly log: Logger,
  ) {
    super();
  }

  static async start(config: WifiConfig, node: string, runDir: string, log: Logger): Promise<WpaWifiManager> {
    const phy = resolveRadio(config.radio);
    const capabilities = await radioCapabilities(phy);
    if (capabilities.stations < config.identities) {
      throw new RadioError(
        `${phy} allows ${capabilities.stations} station interface(s) at once; ${config.identities} identities need a driver with virtual interface support (or set wifi.identities to ${capabilities.stations})`,
      );
    }
    const wifiRunDir = join(runDir, 'wifi');
    mkdirSync(wifiRunDir, { recursive: true, mode: 0o700 });
    const supplicant = await Supplicant.start({ runDir: wifiRunDir, globalSocket: config.supplicantSocket }, log);
    const identities: Identity[] = [];
    try {
      for (let index = 0; index < config.identities; index++) {
        const name = `${config.interfacePrefix}${index}`;
        const mac = identityMac(node, phy, index);
        await addStationInterface(phy, name, mac);
        const station = new Station(name, await supplicant.addInterface(name));
        const slot = { ifname: name, table: config.routingTableBase + index, endpointId: 100 + index };
        identities.push({ name, mac, status: 'idle', station, slot, dhcp: new DhcpClient(name, join(wifiRunDir, name), log) });
        mkdirSync(join(wifiRunDir, name), { recursive: true });
      }
      if (config.mptcp) await setMptcpLimits(Math.max(2, config.identities));
      await clearDestinationRules(destinationRulePriority(config.routingTableBase));
    } catch (error) {
      for (const identity of identities) identity.station.close();
      await supplicant.stop();
      throw error;
    }
    const manager = new WpaWifiManager(config, capabilities, supplicant, identities, log);
    for (const identity of identities) identity.station.on('disconnected', (event) => manager.onDisconnected(identity, event.reason));
    log.info({ radio: phy, stations: capabilities.stations, channels: capabilities.channels, identities: identities.map((i) => `${i.name} ${i.mac}`) }, 'wifi identities created');
    manager.schedule();
    return manager;
  }

  private schedule(delayMs = 0): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => this.requestRound(), delayMs);
  }

  /** Rounds run one at a time; a request during a round queues exactly one more. */
  private requestRound(): void {
    if (this.roundQueued || this.stopped) return;
    this.roundQueued = true;
    this.rounds = this.rounds.then(async () => {
      this.roundQueued = false;
      if (this.stopped) return;
      try {
        await this.round();
      } catch (error) {
        this.log.warn({ err: (error as Error).message }, 'wifi round failed');
      }
      this.emit('changed', this.state());
      this.schedule(this.retrySoon ? 500 : this.config.evaluateIntervalMs);
      this.retrySoon = false;
    });
  }

  private onDisconnected(identity: Identity, reason: number): void {
    if (identity.status !== 'connected') return;
    const ap = identity.bssid ? this.aps.get(identity.bssid) : undefined;
    if (ap) ap.avoidedUntil = performance.now() + this.config.avoidMs;
    this.log.warn({ identity: identity.name, bssid: identity.bssid, reason }, 'wifi identity lost its AP');
    identity.status = 'idle';
    identity.lostAt = performance.now();
    this.forget(identity);
    void identity.station.disconnect();
    this.requestRound();
  }

  private async scan(): Promise<void> {
    const scanner = this.identities.find((i) => i.status !== 'connecting') ?? this.identities[0]!;
    const entries = await scanner.station.scan();
    this.lastScanAt = performance.now();
    const seen = new Set<string>();
    for (const entry of entries) {
      const network = this.config.networks.find((n) => matches(n, entry));
      if (!network) continue;
      seen.add(entry.bssid);
      const ie = (await scanner.station.bss(entry.bssid)).get('ie');
      const previous = this.aps.get(entry.bssid);
      this.aps.set(entry.bssid, { entry, network, load: ie ? parseBssLoad(ie) : undefined, avoidedUntil: previous?.avoidedUntil, error: previous?.error });
    }
    for (const bssid of this.aps.keys()) if (!seen.has(bssid)) this.aps.delete(bssid);
  }

  private scoreOf(ap: KnownAp): number {
    const linked = this.identities.find((i) => i.status === 'connected' && i.bssid === ap.entry.bssid);
    return airtimeScore({ signal: linked?.signal ?? ap.entry.signal, load: ap.load, stats: linked?.stats });
  }

  private async measureLinks(): Promise<void> {
    for (const identity of this.identities.filter((i) => i.status === 'connected')) {
      try {
        const poll = await identity.station.poll();
        identity.signal = poll.rssi;
        const counters = await txStats(identity.name);
        const previous = identity.counters;
        identity.counters = counters;
        identity.txBitrate = counters?.txBitrate ?? poll.linkSpeed;
        // An idle link's rate says little (rate control has nothing to adapt to): judge only busy intervals.
        const sent = counters && previous ? counters.txPackets - previous.txPackets : 0;
        identity.stats =
          counters && previous && sent >= MIN_PACKETS_TO_JUDGE
            ? { ...counters, txPackets: sent, txRetries: counters.txRetries - previous.txRetries, txFailed: counters.txFailed - previous.txFailed }
            : undefined;
      } catch (error) {
        this.log.debug({ identity: identity.name, err: (error as Error).message }, 'link poll failed');
      }
    }
  }

  private async round(): Promise<void> {
    await this.measureLinks();
    if (performance.now() - this.lastScanAt >= this.config.scanIntervalMs || this.aps.size === 0) await this.scan();
    const now = performance.now();
    const usable = [...this.aps.values()].filter((ap) => !(ap.avoidedUntil && ap.avoidedUntil > now));
    const current = new Map(this.identities.filter((i) => i.status === 'connected' && i.bssid).map((i) => [i.name, i.bssid!]));
    const target = plan({
      identities: this.identities.map((i) => i.name),
      candidates: usable.map((ap) => ({ bssid: ap.entry.bssid, channel: channelOf(ap.entry.frequency), score: this.scoreOf(ap), trusted: isTrusted(ap.network) })),
      current,
      channels: this.capabilities.channels,
      hysteresis: this.config.hysteresis,
    });
    for (const identity of this.identities) if (identity.status === 'connected') identity.score = this.scoreOf(this.aps.get(identity.bssid!)!);

    const moves = this.identities.filter((i) => target.get(i.name) !== current.get(i.name));
    if (moves.length === 0) return;
    const channelsBefore = this.channelsInUse();
    const channelsAfter = [...new Set([...target.values()].map((bssid) => channelOf(this.aps.get(bssid)!.entry.frequency)))].sort((a, b) => a - b);
    const decidedAt = performance.now();
    await Promise.all(moves.map((identity) => this.move(identity, target.get(identity.name))));
    const switched = channelsBefore.some((channel) => !channelsAfter.includes(channel));
    if (switched && this.identities.every((i) => !target.has(i.name) || i.status === 'connected')) {
      this.lastSwitch = { from: channelsBefore, to: channelsAfter, ms: Math.round(performance.now() - decidedAt), at: new Date().toISOString() };
      this.log.info(this.lastSwitch, 'wifi channel switch');
    }
  }

  private channelsInUse(): number[] {
    return [...new Set(this.identities.filter((i) => i.status === 'connected').map((i) => i.channel!))].sort((a, b) => a - b);
  }

  private forget(identity: Identity): void {
    identity.dhcp.stop();
    if (identity.address) void releaseLease(identity.slot);
    for (const key of ['ssid', 'bssid', 'channel', 'frequency', 'signal', 'txBitrate', 'score', 'trusted', 'address', 'stats', 'counters'] as const) delete identity[key];
  }

  /** Takes `identity` off its AP and, when given one, onto `bssid`. */
  private async move(identity: Identity, bssid: string | undefined): Promise<void> {
    if (identity.status === 'connected') {
      identity.status = 'idle';
      this.forget(identity);
      await identity.station.disconnect();
    }
    if (!bssid) return;
    const ap = this.aps.get(bssid)!;
    identity.status = 'connecting';
    identity.error = undefined;
    try {
      await identity.station.connect({ ssid: ap.network.ssid, bssid, frequency: ap.entry.frequency, passphrase: ap.network.passphrase }, this.config.connectTimeoutMs);
    } catch (error) {
      identity.status = 'failed';
      identity.error = (error as Error).message;
      // A wrong passphrase does not fix itself: that AP waits for a config change.
      ap.avoidedUntil = performance.now() + this.config.avoidMs;
      if (error instanceof ConnectError && error.reason === 'wrong-key') [ap.avoidedUntil, ap.error] = [Infinity, identity.error];
      this.log.warn({ identity: identity.name, bssid, err: identity.error }, 'wifi association failed');
      this.retrySoon = true;
      return;
    }
    Object.assign(identity, {
      status: 'connected',
      ssid: ap.network.ssid,
      bssid,
      frequency: ap.entry.frequency,
      channel: channelOf(ap.entry.frequency),
      signal: ap.entry.signal,
      trusted: isTrusted(ap.network),
    });
    identity.score = this.scoreOf(ap);
    if (identity.lostAt !== undefined) {
      this.lastRecoveryMs = Math.round(performance.now() - identity.lostAt);
      identity.lostAt = undefined;
    }
    this.log.info({ identity: identity.name, ssid: identity.ssid, bssid, channel: identity.channel }, 'wifi identity associated');
    if (this.config.dhcp) this.startDhcp(identity, bssid);
  }

  /**
   * Whether MPTCP may open subflows over the identity. The kernel's path manager serves every
   * MPTCP connection alike, so while the migration stream is sensitive only trusted identities
   * get an endpoint: a pooled stream never takes a subflow over an open network.
   */
  private poolsThrough(identity: Identity): boolean {
    return identity.trusted === true || !this.config.sensitive.includes('migration');
  }

  private startDhcp(identity: Identity, bssid: string): void {
    let applying = Promise.resolve();
    identity.dhcp.start(
      (lease) => {
        applying = applying.then(async () => {
          if (identity.bssid !== bssid) return;
          try {
            await applyLease(identity.slot, lease, this.config.mptcp && this.poolsThrough(identity));
            identity.address = lease.address;
            this.log.info({ identity: identity.name, address: lease.address, router: lease.router, table: identity.slot.table }, 'wifi identity addressed');
          } catch (error) {
            this.log.error({ identity: identity.name, err: (error as Error).message }, 'cannot apply the DHCP lease');
          }
          this.emit('changed', this.state());
        });
      },
      () => {
        applying = applying.then(async () => {
          if (!identity.address) return;
          delete identity.address;
          await releaseLease(identity.slot);
        });
      },
    );
  }

  /** The identities traffic can leave through: associated, with an address and a routing table of their own. */
  paths(): PathCandidate[] {
    return this.identities
      .filter((i) => i.status === 'connected' && i.address)
      .map((i) => ({ identity: i.name, address: i.address!, table: i.slot.table, trusted: i.trusted === true, score: i.score ?? 0 }));
  }

  state(): WifiState {
    const now = performance.now();
    const aps: ApState[] = [...this.aps.values()].map((ap) => ({
      bssid: ap.entry.bssid,
      ssid: ap.entry.ssid,
      channel: channelOf(ap.entry.frequency),
      frequency: ap.entry.frequency,
      signal: ap.entry.signal,
      security: ap.entry.security,
      trusted: isTrusted(ap.network),
      score: Math.round(this.scoreOf(ap) * 10) / 10,
      ...(ap.load ? { utilization: Math.round((ap.load.utilization / 255) * 100) / 100 } : {}),
      ...(ap.avoidedUntil && ap.avoidedUntil > now && Number.isFinite(ap.avoidedUntil) ? { avoidedUntil: Math.round(Date.now() + ap.avoidedUntil - now) } : {}),
      ...(ap.error ? { error: ap.error } : {}),
    }));
    const identities = this.identities.map(({ station: _station, slot: _slot, dhcp: _dhcp, stats: _stats, counters: _counters, lostAt: _lostAt, ...state }) => ({ ...state }));
    return {
      backend: 'wpa_supplicant',
      radio: this.capabilities.phy,
      channelCapacity: this.capabilities.channels,
      channels: this.channelsInUse(),
      identities,
      aps,
      ...(this.lastSwitch ? { lastSwitch: this.lastSwitch } : {}),
      ...(this.lastRecoveryMs !== undefined ? { lastRecoveryMs: this.lastRecoveryMs } : {}),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.rounds;
    for (const identity of this.identities) {
      identity.dhcp.stop();
      await releaseLease(identity.slot);
      await identity.station.disconnect();
      identity.station.close();
      await this.supplicant.removeInterface(identity.name);
      if (interfaceExists(identity.name)) await deleteInterface(identity.name).catch(() => undefined);
    }
    await this.supplicant.stop();
  }
}
