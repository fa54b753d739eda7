/**
 * Where NetworkManager owns the WiFi interface, the agent leaves it in charge and uses node-wifi
 * (nmcli underneath) to scan, and nmcli.ts to connect one network: NetworkManager runs one
 * station per interface, so multiple identities need the wpa_supplicant backend.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { promisify } from 'node:util';
import type { Logger } from '../log.js';
import { isTrusted, type NetworkConfig, type WifiConfig } from './config.js';
import { nmcliConnect } from './nmcli.js';
import type { PathCandidate } from './paths.js';
import { airtimeScore } from './scoring.js';
import { channelOf } from './station.js';
import type { ApState, WifiState } from './state.js';

const exec = promisify(execFile);

/** True when nmcli runs and lists `ifname` as a device it manages. */
export async function networkManagerOwns(ifname: string): Promise<boolean> {
  try {
    const { stdout } = await exec('nmcli', ['-t', '-f', 'DEVICE,STATE', 'device', 'status'], { timeout: 5000 });
    return stdout.split('\n').some((line) => {
      const [device, state] = line.split(':');
      return device === ifname && state !== 'unmanaged' && state !== 'unavailable';
    });
  } catch {
    return false;
  }
}

interface NodeWifi {
  init(options: { iface: string | null }): void;
  scan(): Promise<Array<{ ssid: string; bssid: string; channel: number; frequency: number; signal_level: number; security: string }>>;
  getCurrentConnections(): Promise<Array<{ ssid: string; bssid: string; frequency: number; signal_level: number }>>;
}

export class NetworkManagerWifi extends EventEmitter<{ changed: [WifiState] }> {
  private aps: ApState[] = [];
  private identity: WifiState['identities'][number];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private readonly warning: string | undefined;

  private constructor(
    private readonly wifi: NodeWifi,
    private readonly config: WifiConfig,
    private readonly log: Logger,
  ) {
    super();
    this.identity = { name: config.radio, mac: '', status: 'idle' };
    if (config.identities > 1) {
      this.warning = `NetworkManager manages ${config.radio} and runs one identity there; ${config.identities} identities need the wpa_supplicant backend (nmcli device set ${config.radio} managed no, then wifi.backend: wpa_supplicant)`;
      log.warn(this.warning);
    }
  }

  static async start(config: WifiConfig, log: Logger): Promise<NetworkManagerWifi> {
    const wifi = ((await import('node-wifi')) as unknown as { default: NodeWifi }).default;
    wifi.init({ iface: config.radio });
    const manager = new NetworkManagerWifi(wifi, config, log);
    manager.loop();
    return manager;
  }

  private loop(): void {
    this.running = this.round()
      .catch((error: unknown) => {
        this.identity = { ...this.identity, status: 'failed', error: (error as Error).message };
        this.log.warn({ err: (error as Error).message }, 'wifi round failed (NetworkManager)');
      })
      .then(() => {
        this.emit('changed', this.state());
        this.timer = setTimeout(() => this.loop(), this.config.scanIntervalMs);
      });
  }

  private networkOf(ssid: string): NetworkConfig | undefined {
    return this.config.networks.find((n) => n.ssid === ssid);
  }

  private async round(): Promise<void> {
    const seen = await this.wifi.scan();
    this.aps = seen
      .filter((ap) => this.networkOf(ap.ssid))
      .map((ap) => {
        const network = this.networkOf(ap.ssid)!;
        return {
          bssid: ap.bssid.toLowerCase(),
          ssid: ap.ssid,
          channel: ap.channel || channelOf(ap.frequency),
          frequency: ap.frequency,
          signal: ap.signal_level,
          security: ap.security,
          trusted: isTrusted(network),
          score: airtimeScore({ signal: ap.signal_level }),
        };
      })
      .sort((a, b) => b.score - a.score);
    const [current] = await this.wifi.getCurrentConnections();
    const best = this.aps[0];
    const currentScore = current ? airtimeScore({ signal: current.signal_level }) : 0;
    if (best && (!current || (best.ssid !== current.ssid && best.score > currentScore * (1 + this.config.hysteresis)))) {
      this.identity = { ...this.identity, status: 'connecting' };
      await nmcliConnect({ ssid: best.ssid, passphrase: this.networkOf(best.ssid)!.passphrase, ifname: this.config.radio, timeoutMs: this.config.connectTimeoutMs });
      this.log.info({ ssid: best.ssid }, 'wifi connected through NetworkManager');
    }
    const [now] = await this.wifi.getCurrentConnections();
    const network = now ? this.networkOf(now.ssid) : undefined;
    this.identity = now
      ? {
          name: this.config.radio,
          mac: '',
          status: 'connected',
          ssid: now.ssid,
          bssid: now.bssid.toLowerCase(),
          frequency: now.frequency,
          channel: channelOf(now.frequency),
          signal: now.signal_level,
          score: airtimeScore({ signal: now.signal_level }),
          trusted: network ? isTrusted(network) : false,
        }
      : { name: this.config.radio, mac: '', status: 'idle' };
  }

  /** The one connection, with no address of our own to bind to: NetworkManager's routes decide where it leaves. */
  paths(): PathCandidate[] {
    const { status, name, trusted, score } = this.identity;
    return status === 'connected' ? [{ identity: name, trusted: trusted === true, score: score ?? 0 }] : [];
  }

  state(): WifiState {
    return {
      backend: 'networkmanager',
      radio: this.config.radio,
      channelCapacity: 1,
      channels: this.identity.channel ? [this.identity.channel] : [],
      identities: [this.identity],
      aps: this.aps,
      ...(this.warning ? { warning: this.warning } : {}),
    };
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.running;
    clearTimeout(this.timer);
  }
}
