/** What the WiFi manager reports: through the API, the CLI and the telemetry topic. */

export type IdentityStatus = 'idle' | 'connecting' | 'connected' | 'failed';

export interface IdentityState {
  name: string;
  mac: string;
  status: IdentityStatus;
  ssid?: string;
  bssid?: string;
  channel?: number;
  frequency?: number;
  /** dBm */
  signal?: number;
  /** Mbit/s */
  txBitrate?: number;
  /** Useful airtime, Mbit/s (see scoring.ts). */
  score?: number;
  trusted?: boolean;
  address?: string;
  /** Why the last attempt failed. */
  error?: string;
}

export interface ApState {
  bssid: string;
  ssid: string;
  channel: number;
  frequency: number;
  signal: number;
  security: string;
  trusted: boolean;
  score: number;
  /** Channel utilization 0..1 from the AP's BSS Load element, when it sends one. */
  utilization?: number;
  /** Until when (epoch ms) the AP is avoided after it vanished or refused us. */
  avoidedUntil?: number;
  /** Why the AP is not used at all (e.g. a wrong passphrase in the config). */
  error?: string;
}

export interface SwitchRecord {
  from: number[];
  to: number[];
  /** From the decision to every identity associated on the new channels. */
  ms: number;
  at: string;
}

export interface WifiState {
  backend: 'wpa_supplicant' | 'networkmanager';
  radio: string;
  /** Channels the radio can be on at once. */
  channelCapacity: number;
  channels: number[];
  identities: IdentityState[];
  aps: ApState[];
  lastSwitch?: SwitchRecord;
  /** Something the operator should know, e.g. why fewer identities run than configured. */
  warning?: string;
  /** Time from losing an AP to the identity associated again, last time it happened. */
  lastRecoveryMs?: number;
}
