/**
 * The WiFi part of the agent: picks the backend (wpa_supplicant for identities of our own,
 * NetworkManager where it owns the interface) and keeps the agent running when WiFi cannot
 * start: the reason is in the state, the rest of the agent is unaffected.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import type { WifiConfig } from './config.js';
import type { WpaWifiManager } from './manager.js';
import type { NetworkManagerWifi } from './networkmanager.js';
import type { WifiState } from './state.js';

export type WifiReport = WifiState | { status: 'disabled' | 'starting'; radio: string } | { status: 'failed'; radio: string; error: string };

export class Wifi extends EventEmitter<{ changed: [WifiReport] }> {
  private backend: WpaWifiManager | NetworkManagerWifi | undefined;
  private report: WifiReport;
  private readonly starting: Promise<void>;

  constructor(
    private readonly config: WifiConfig,
    node: string,
    runDir: string,
    private readonly log: Logger,
  ) {
    super();
    this.report = { status: config.enabled ? 'starting' : 'disabled', radio: config.radio };
    this.starting = config.enabled ? this.start(node, runDir) : Promise.resolve();
  }

  private async start(node: string, runDir: string): Promise<void> {
    try {
      // Loaded only when WiFi is enabled: the wpa_ctrl socket is a native addon, and most gateways run without WiFi here.
      const { NetworkManagerWifi, networkManagerOwns } = await import('./networkmanager.js');
      const useNetworkManager = this.config.backend === 'networkmanager' || (this.config.backend === 'auto' && (await networkManagerOwns(this.config.radio)));
      this.backend = useNetworkManager
        ? await NetworkManagerWifi.start(this.config, this.log)
        : await (await import('./manager.js')).WpaWifiManager.start(this.config, node, runDir, this.log);
      this.backend.on('changed', (state) => this.update(state));
      this.update(this.backend.state());
    } catch (error) {
      this.log.error({ radio: this.config.radio, err: (error as Error).message }, 'wifi cannot start; the agent runs without it');
      this.update({ status: 'failed', radio: this.config.radio, error: (error as Error).message });
    }
  }

  private update(report: WifiReport): void {
    this.report = report;
    this.emit('changed', report);
  }

  state(): WifiReport {
    return this.backend ? this.backend.state() : this.report;
  }

  /** Where traffic of this kind should leave from; sensitive traffic (the cloud link) only through trusted identities. */
  sourceAddress(purpose: 'sensitive' | 'any'): string | undefined {
    return this.backend?.sourceAddress(purpose);
  }

  async stop(): Promise<void> {
    await this.starting;
    await this.backend?.stop();
  }
}
