/**
 * The radio as nl80211 describes it, through iw and ip: what the driver can do (station
 * interfaces, channels at once), the virtual interfaces that carry the identities, and the
 * per-link transmit statistics that wpa_supplicant does not report.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export class RadioError extends Error {}

export async function run(command: string, args: string[]): Promise<string> {
  try {
    return (await exec(command, args, { timeout: 10_000 })).stdout;
  } catch (error) {
    const failure = error as { stderr?: string; message: string; code?: string };
    if (failure.code === 'ENOENT') throw new RadioError(`${command} is not installed (Debian package ${command === 'iw' ? 'iw' : 'iproute2'})`);
    throw new RadioError(`${command} ${args.join(' ')}: ${(failure.stderr || failure.message).trim()}`);
  }
}

export interface RadioCapabilities {
  phy: string;
  /** How many station interfaces the driver allows at once. */
  stations: number;
  /** How many channels the radio can be on at once (multi-channel concurrency). */
  channels: number;
}

/** Reads the "valid interface combinations" of `iw phy <phy> info`; the best one with managed interfaces wins. */
export function parseCapabilities(phy: string, info: string): RadioCapabilities {
  if (!/Supported interface modes:[\s\S]*?\* managed/.test(info)) throw new RadioError(`${phy} cannot run station (managed) interfaces`);
  const section = info.split('valid interface combinations:')[1]?.split(/\n\t(?=\S)/)[0] ?? '';
  let best = { stations: 1, channels: 1 };
  for (const combination of section.split(/\n\t+ ?\* /).slice(1)) {
    const flat = combination.replace(/\s+/g, ' ');
    const groups = [...flat.matchAll(/#\{([^}]*)\} <= (\d+)/g)];
    const managed = groups.find((group) => group[1]!.split(',').map((mode) => mode.trim()).includes('managed'));
    if (!managed) continue;
    const total = Number(/total <= (\d+)/.exec(flat)?.[1] ?? managed[2]);
    const stations = Math.min(Number(managed[2]), total);
    const channels = Number(/#channels <= (\d+)/.exec(flat)?.[1] ?? 1);
    if (stations > best.stations || (stations === best.stations && channels > best.channels)) best = { stations, channels };
  }
  return { phy, ...best };
}

export async function radioCapabilities(phy: string): Promise<RadioCapabilities> {
  return parseCapabilities(phy, await run('iw', ['phy', phy, 'info']));
}

/** The radio (`phyN`) behind a network interface, or the radio itself when given one. */
export function resolveRadio(name: string): string {
  if (existsSync(`/sys/class/ieee80211/${name}`)) return name;
  const link = `/sys/class/net/${name}/phy80211/name`;
  if (existsSync(link)) return readFileSync(link, 'utf8').trim();
  const radios = existsSync('/sys/class/ieee80211') ? readdirSync('/sys/class/ieee80211') : [];
  throw new RadioError(`no WiFi radio or interface named ${name} (radios here: ${radios.join(', ') || 'none'})`);
}

export function interfaceExists(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}`);
}

/**
 * A stable, locally administered unicast MAC for identity `index` of this node on this radio:
 * the same after every restart, different between identities and between gateways.
 */
export function identityMac(node: string, phy: string, index: number): string {
  const permanent = readFileSync(`/sys/class/ieee80211/${phy}/macaddress`, 'utf8').trim();
  const bytes = createHash('sha256').update(`${node}/${permanent}/${index}`).digest().subarray(0, 6);
  bytes[0] = (bytes[0]! & 0xfc) | 0x02;
  return [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

export async function addStationInterface(phy: string, ifname: string, mac: string): Promise<void> {
  if (!interfaceExists(ifname)) await run('iw', ['phy', phy, 'interface', 'add', ifname, 'type', 'managed']);
  await run('ip', ['link', 'set', ifname, 'down']);
  await run('ip', ['link', 'set', ifname, 'address', mac]);
  await run('ip', ['link', 'set', ifname, 'up']);
}

export async function deleteInterface(ifname: string): Promise<void> {
  if (interfaceExists(ifname)) await run('iw', ['dev', ifname, 'del']);
}

export interface TxStats {
  /** Mbit/s */
  txBitrate: number;
  txPackets: number;
  txRetries: number;
  txFailed: number;
  /** dBm */
  signal: number;
}

/** `iw dev <if> station dump` of a station interface: its one peer, the AP. */
export function parseStationDump(dump: string): TxStats | undefined {
  if (!dump.includes('Station ')) return undefined;
  const number = (label: string) => Number(new RegExp(`\\t${label}:\\s*(-?[\\d.]+)`).exec(dump)?.[1] ?? 0);
  return { txBitrate: number('tx bitrate'), txPackets: number('tx packets'), txRetries: number('tx retries'), txFailed: number('tx failed'), signal: number('signal') };
}

export async function txStats(ifname: string): Promise<TxStats | undefined> {
  return parseStationDump(await run('iw', ['dev', ifname, 'station', 'dump']));
}
