/** The `wifi` section of the agent's config. */
import * as v from 'valibot';

/** The kinds of the agent's own traffic that can be held to trusted WiFi paths (paths.ts). */
export const TRAFFIC = ['cloud', 'peers', 'migration'] as const;
export type Traffic = (typeof TRAFFIC)[number];

const ms = (fallback: number) => v.optional(v.pipe(v.number(), v.integer(), v.minValue(100)), fallback);

const networkSchema = v.strictObject({
  ssid: v.pipe(v.string(), v.minLength(1), v.maxLength(32)),
  /** WPA2/WPA3-personal passphrase; leave out for an open network. */
  passphrase: v.optional(v.pipe(v.string(), v.minLength(8), v.maxLength(63))),
  /** Whether sensitive traffic may use it. Defaults to true for WPA networks, false for open ones. */
  trusted: v.optional(v.boolean()),
});

export const wifiSection = v.strictObject({
  enabled: v.optional(v.boolean(), false),
  /** auto: NetworkManager when it manages the radio's interface, else wpa_supplicant. */
  backend: v.optional(v.picklist(['auto', 'wpa_supplicant', 'networkmanager']), 'auto'),
  /** The radio, as `phy0` or as one of its interfaces (`wlan0`). */
  radio: v.optional(v.string(), 'wlan0'),
  /** How many station identities (virtual interfaces with their own MACs) to run. */
  identities: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(8)), 2),
  /** Identity interfaces are named `<prefix>0`, `<prefix>1`, … */
  interfacePrefix: v.optional(v.pipe(v.string(), v.regex(/^[a-z][a-z0-9]{0,9}$/)), 'wid'),
  networks: v.optional(v.array(networkSchema), []),
  scanIntervalMs: ms(30_000),
  evaluateIntervalMs: ms(5_000),
  /** A new choice of APs must beat the current one by this fraction before the radio moves. */
  hysteresis: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(5)), 0.2),
  /** An AP that vanished or refused us is avoided for this long. */
  avoidMs: ms(30_000),
  connectTimeoutMs: ms(15_000),
  /** Give identities addresses by DHCP, with a routing table each and MPTCP endpoints. */
  dhcp: v.optional(v.boolean(), true),
  mptcp: v.optional(v.boolean(), true),
  /** Routing tables (and ip rule priorities) of the identities start here. */
  routingTableBase: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(30000)), 1000),
  /** The agent's own traffic that leaves only from a trusted identity's address (paths.ts). */
  sensitive: v.optional(v.pipe(v.array(v.picklist(TRAFFIC)), v.checkItems((item, index, all) => all.indexOf(item) === index, 'each kind of traffic once')), [...TRAFFIC]),
  /** With no trusted identity associated, sensitive traffic waits (`wait`), or takes any identity, else the system's routes (`any`). */
  fallback: v.optional(v.picklist(['wait', 'any']), 'wait'),
  /** A running wpa_supplicant's global control socket; when absent the agent starts its own. */
  supplicantSocket: v.optional(v.string()),
});

export type WifiConfig = v.InferOutput<typeof wifiSection>;
export type NetworkConfig = v.InferOutput<typeof networkSchema>;

/** The section with its defaults filled in, for callers that build it in code (benchmarks, tests). */
export function wifiConfig(input: v.InferInput<typeof wifiSection>): WifiConfig {
  return v.parse(wifiSection, input);
}

/** Whether sensitive traffic may use the network: as configured, else WPA networks yes, open ones no. */
export function isTrusted(network: NetworkConfig): boolean {
  return network.trusted ?? network.passphrase !== undefined;
}
