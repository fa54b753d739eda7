/**
 * The WiFi module: picks the backend (wpa_supplicant for identities of our own, NetworkManager
 * where it owns the interface), publishes its state on `edge-agent/node/<node>/wifi` as it
 * changes, and serves it on the local API. WiFi that cannot start leaves the agent running: the
 * reason is in the state (`failed`), the rest of the agent is unaffected.
 */
import type { Route } from '../http/router.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { Traffic, WifiConfig } from './config.js';
import type { NetworkManagerWifi } from './network-manager.js';
import { TrafficPaths, type Placement } from './paths.js';
import type { WifiState } from './state.js';
import type { WpaWifiManager } from './wpa-supplicant.js';

/** What the WiFi manager says: its state, or why there is none. */
export type WifiReport = WifiState | { status: 'disabled' | 'starting'; radio: string } | { status: 'failed'; radio: string; error: string };

/** What `GET /api/v1/wifi` answers and the state topic carries: the report, and where the agent's own traffic leaves from. */
export type WifiView = WifiReport & { paths: Record<Traffic, Placement> };

export interface WifiDeps {
  config: WifiConfig;
  /** This node: names the state topic; the identities' MACs derive from it. */
  node: string;
  /** wpa_supplicant's sockets and the DHCP leases live under `<runDir>/wifi`. */
  runDir: string;
  /** Where the state is published, when someone subscribed. */
  bus: { wants(topic: string): boolean; publish(topic: string, payload: string): void };
  log: Logger;
}

export class Wifi implements Module {
  readonly name = MODULE.wifi;
  readonly routes: readonly Route[] = [{ method: 'GET', path: '/api/v1/wifi', handle: () => this.view() }];
  /** Where the cloud link, the peer channel and the migration stream leave from. */
  readonly paths: TrafficPaths;
  private backend: WpaWifiManager | NetworkManagerWifi | undefined;
  private report: WifiReport;
  private starting: Promise<void> = Promise.resolve();
  private readonly removers: Remove[] = [];
  private stopping = false;
  private readonly topic: string;

  constructor(private readonly deps: WifiDeps) {
    this.report = { status: deps.config.enabled ? 'starting' : 'disabled', radio: deps.config.radio };
    this.topic = `edge-agent/node/${deps.node}/wifi`;
    this.paths = new TrafficPaths(deps.config);
  }

  /**
   * Resolves at once: the radio comes up in the background (the state says `starting`), so WiFi
   * never holds up the agent. Never rejects: a backend that cannot start is reported as `failed`.
   */
  async start(_signal: AbortSignal): Promise<void> {
    if (this.deps.config.enabled) this.starting = this.startBackend();
  }

  private async startBackend(): Promise<void> {
    const { config, node, runDir, log } = this.deps;
    try {
      // Loaded only when WiFi is enabled: the wpa_ctrl socket is a native addon, and most gateways run without WiFi here.
      const { NetworkManagerWifi, networkManagerOwns } = await import('./network-manager.js');
      const useNetworkManager = config.backend === 'networkmanager' || (config.backend === 'auto' && (await networkManagerOwns(config.radio)));
      const backend = useNetworkManager
        ? await NetworkManagerWifi.start(config, log)
        : await (await import('./wpa-supplicant.js')).WpaWifiManager.start(config, node, runDir, log);
      this.backend = backend;
      const changed = (state: WifiState): void => this.update(state);
      backend.on('changed', changed);
      this.removers.push(() => backend.off('changed', changed));
      this.update(backend.state());
    } catch (error) {
      log.error({ radio: config.radio, err: (error as Error).message }, 'wifi cannot start; the agent runs without it');
      this.update({ status: 'failed', radio: config.radio, error: (error as Error).message });
    }
  }

  private update(report: WifiReport): void {
    this.report = report;
    // Stopping: the connections placed on identities go down with the agent, not onto other paths.
    if (this.stopping) return;
    this.paths.update(this.backend ? { candidates: this.backend.paths() } : { unavailable: 'status' in report && report.status === 'failed' ? `WiFi failed: ${report.error}` : 'WiFi is starting' });
    if (this.deps.bus.wants(this.topic)) this.deps.bus.publish(this.topic, JSON.stringify(this.view()));
  }

  state(): WifiReport {
    return this.backend ? this.backend.state() : this.report;
  }

  view(): WifiView {
    return { ...this.state(), paths: this.paths.state() };
  }

  /** Waits for a start under way, then takes the backend down: identities, leases, wpa_supplicant. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.starting;
    for (const remove of this.removers.splice(0)) remove();
    await this.backend?.stop();
  }
}
