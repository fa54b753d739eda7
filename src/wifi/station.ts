/** One station interface as wpa_supplicant runs it: scan, connect to one AP, poll the link, follow events. */
import { pbkdf2Sync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { parseKeyValues, WpaCtrlError, type WpaCtrl, type WpaEvent } from './wpa-ctrl.js';

export type Security = 'open' | 'wep' | 'wpa-psk' | 'wpa3-sae' | 'enterprise';

export interface ScanEntry {
  bssid: string;
  ssid: string;
  frequency: number;
  /** dBm */
  signal: number;
  security: Security;
}

export interface LinkPoll {
  /** dBm */
  rssi: number;
  /** Mbit/s, the current transmit rate */
  linkSpeed: number;
  frequency: number;
}

export interface Target {
  ssid: string;
  bssid: string;
  /** Where the AP was heard: scanning only there makes association take a fraction of a second. */
  frequency?: number;
  /** A WPA passphrase; absent for open networks. */
  passphrase?: string;
}

export class ConnectError extends Error {
  constructor(
    message: string,
    /** Why, in one word a caller can act on. */
    readonly reason: 'wrong-key' | 'rejected' | 'not-found' | 'timeout',
  ) {
    super(message);
  }
}

/** wpa_supplicant's scan flags, e.g. `[WPA2-PSK-CCMP][ESS]`, reduced to what the agent decides on. */
export function securityOf(flags: string): Security {
  if (flags.includes('EAP')) return 'enterprise';
  if (flags.includes('SAE')) return 'wpa3-sae';
  if (flags.includes('PSK')) return 'wpa-psk';
  if (flags.includes('WEP')) return 'wep';
  return 'open';
}

/** SCAN_RESULTS: a header line, then `bssid TAB frequency TAB signal TAB flags TAB ssid`. */
export function parseScanResults(reply: string): ScanEntry[] {
  return reply
    .split('\n')
    .slice(1)
    .filter((line) => line.includes('\t'))
    .map((line) => {
      const [bssid, frequency, signal, flags, ssid] = line.split('\t');
      return { bssid: bssid!.toLowerCase(), frequency: Number(frequency), signal: Number(signal), security: securityOf(flags ?? ''), ssid: ssid ?? '' };
    });
}

export function channelOf(frequency: number): number {
  if (frequency === 2484) return 14;
  if (frequency >= 2412 && frequency <= 2472) return (frequency - 2407) / 5;
  if (frequency >= 5000 && frequency < 5925) return (frequency - 5000) / 5;
  if (frequency >= 5955) return (frequency - 5950) / 5;
  return 0;
}

/** The 256-bit PSK that wpa_passphrase derives, so the passphrase never passes through a quoted string. */
export function pskOf(ssid: string, passphrase: string): string {
  return pbkdf2Sync(passphrase, ssid, 4096, 32, 'sha1').toString('hex');
}

export interface StationEvents {
  disconnected: [{ bssid: string; reason: number; locallyGenerated: boolean }];
  connected: [{ bssid: string }];
  event: [WpaEvent];
}

export class Station extends EventEmitter<StationEvents> {
  constructor(
    readonly ifname: string,
    private readonly ctrl: WpaCtrl,
  ) {
    super();
    ctrl.on('event', (event) => this.onEvent(event));
  }

  private onEvent(event: WpaEvent): void {
    this.emit('event', event);
    const [kind] = event.text.split(' ', 1);
    const fields = Object.fromEntries([...event.text.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
    if (kind === 'CTRL-EVENT-DISCONNECTED') {
      this.emit('disconnected', { bssid: fields.bssid ?? '', reason: Number(fields.reason ?? 0), locallyGenerated: fields.locally_generated === '1' });
    } else if (kind === 'CTRL-EVENT-CONNECTED') {
      this.emit('connected', { bssid: /Connection to ([0-9a-f:]{17})/i.exec(event.text)?.[1]?.toLowerCase() ?? '' });
    }
  }

  /** Resolves with the first event whose text starts with one of `kinds`, or rejects after `timeoutMs`. */
  private nextEvent(kinds: string[], timeoutMs: number): { promise: Promise<WpaEvent>; cancel: () => void } {
    let cancel = () => {};
    const promise = new Promise<WpaEvent>((resolve, reject) => {
      const listener = (event: WpaEvent) => {
        if (!kinds.some((kind) => event.text.startsWith(kind))) return;
        cancel();
        resolve(event);
      };
      const timer = setTimeout(() => {
        cancel();
        reject(new ConnectError(`${this.ifname}: none of ${kinds.join(', ')} within ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      cancel = () => {
        clearTimeout(timer);
        this.off('event', listener);
      };
      this.on('event', listener);
    });
    return { promise, cancel };
  }

  /** Triggers a scan (only the given frequencies, if any) and returns what the radio heard. */
  async scan(frequencies: number[] = [], timeoutMs = 15_000): Promise<ScanEntry[]> {
    const done = this.nextEvent(['CTRL-EVENT-SCAN-RESULTS', 'CTRL-EVENT-SCAN-FAILED'], timeoutMs);
    const command = frequencies.length ? `SCAN freq=${frequencies.join(',')}` : 'SCAN';
    const reply = (await this.ctrl.request(command)).trim();
    // FAIL-BUSY: a scan is already running on this radio; its results serve this caller too.
    if (reply !== 'OK' && reply !== 'FAIL-BUSY') {
      done.cancel();
      throw new WpaCtrlError(`${this.ifname}: SCAN answered ${reply}`);
    }
    const event = await done.promise;
    if (event.text.startsWith('CTRL-EVENT-SCAN-FAILED')) throw new WpaCtrlError(`${this.ifname}: scan failed (${event.text})`);
    return this.scanResults();
  }

  async scanResults(): Promise<ScanEntry[]> {
    return parseScanResults(await this.ctrl.command('SCAN_RESULTS'));
  }

  /** Associates with exactly one AP (by BSSID) and resolves once connected. */
  async connect(target: Target, timeoutMs = 15_000): Promise<void> {
    await this.ctrl.command('REMOVE_NETWORK all');
    const id = (await this.ctrl.command('ADD_NETWORK')).trim();
    const set = (name: string, value: string) => this.ctrl.command(`SET_NETWORK ${id} ${name} ${value}`);
    await set('ssid', Buffer.from(target.ssid).toString('hex'));
    await set('bssid', target.bssid);
    if (target.frequency) await set('scan_freq', String(target.frequency));
    if (target.passphrase !== undefined) {
      await set('key_mgmt', 'WPA-PSK');
      await set('psk', pskOf(target.ssid, target.passphrase));
    } else {
      await set('key_mgmt', 'NONE');
    }
    const outcome = this.nextEvent(['CTRL-EVENT-CONNECTED', 'CTRL-EVENT-SSID-TEMP-DISABLED', 'CTRL-EVENT-ASSOC-REJECT', 'CTRL-EVENT-NETWORK-NOT-FOUND'], timeoutMs);
    try {
      await this.ctrl.command(`SELECT_NETWORK ${id}`);
    } catch (error) {
      outcome.cancel();
      throw error;
    }
    const event = await outcome.promise.catch(async (error: unknown) => {
      await this.disconnect();
      throw error;
    });
    if (event.text.startsWith('CTRL-EVENT-CONNECTED')) return;
    await this.disconnect();
    if (event.text.includes('WRONG_KEY')) throw new ConnectError(`${this.ifname}: wrong passphrase for ${target.ssid}`, 'wrong-key');
    if (event.text.startsWith('CTRL-EVENT-NETWORK-NOT-FOUND')) throw new ConnectError(`${this.ifname}: ${target.ssid} (${target.bssid}) not found`, 'not-found');
    throw new ConnectError(`${this.ifname}: ${target.ssid} (${target.bssid}) refused the association: ${event.text}`, 'rejected');
  }

  async disconnect(): Promise<void> {
    await this.ctrl.request('DISCONNECT').catch(() => undefined);
    await this.ctrl.request('REMOVE_NETWORK all').catch(() => undefined);
  }

  /** What wpa_supplicant knows of one BSS; `ie` holds its information elements in hex. */
  async bss(bssid: string): Promise<Map<string, string>> {
    return parseKeyValues(await this.ctrl.command(`BSS ${bssid}`));
  }

  async status(): Promise<Map<string, string>> {
    return parseKeyValues(await this.ctrl.command('STATUS'));
  }

  async poll(): Promise<LinkPoll> {
    const values = parseKeyValues(await this.ctrl.command('SIGNAL_POLL'));
    return { rssi: Number(values.get('RSSI') ?? -100), linkSpeed: Number(values.get('LINKSPEED') ?? 0), frequency: Number(values.get('FREQUENCY') ?? 0) };
  }

  close(): void {
    this.ctrl.close();
  }
}
