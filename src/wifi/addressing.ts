/**
 * Gives each identity an address of its own (DHCP, busybox udhcpc) and a routing table of its
 * own: traffic from that address leaves through that identity (source-based policy routing),
 * and a Linux MPTCP endpoint lets one MPTCP connection open subflows over every identity.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { run } from './radio.js';

export interface Lease {
  address: string;
  prefixLength: number;
  router?: string;
}

const LEASE_LINE = 'edge-agent-lease ';

/** udhcpc runs this on every lease event; it only reports, the agent configures. */
const SCRIPT = `#!/bin/sh
echo "${LEASE_LINE}$1 $ip \${mask:-0} \${router%% *}"
`;

function dhcpClient(): { command: string; args: string[] } {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) if (existsSync(join(dir, 'udhcpc'))) return { command: join(dir, 'udhcpc'), args: [] };
  return { command: 'busybox', args: ['udhcpc'] };
}

/** Network address of `address/prefixLength`, for the on-link route of the identity's table. */
export function networkOf(address: string, prefixLength: number): string {
  const value = address.split('.').reduce((sum, octet) => (sum << 8) | Number(octet), 0) >>> 0;
  const mask = prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
  const network = (value & mask) >>> 0;
  return [24, 16, 8, 0].map((shift) => (network >>> shift) & 255).join('.');
}

export class DhcpClient {
  private child: ChildProcess | undefined;

  constructor(
    private readonly ifname: string,
    private readonly runDir: string,
    private readonly log: Logger,
  ) {}

  /** Starts udhcpc; `onLease` gets each new lease, `onLost` each loss (expiry, NAK, interface down). */
  start(onLease: (lease: Lease) => void, onLost: () => void): void {
    this.stop();
    const script = join(this.runDir, 'udhcpc.script');
    // Only the agent's user may run or change it, as only they may enter the run dir.
    writeFileSync(script, SCRIPT, { mode: 0o700 });
    const client = dhcpClient();
    const child = spawn(client.command, [...client.args, '-i', this.ifname, '-f', '-s', script, '-t', '20', '-T', '1', '-A', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.once('error', (error) => this.log.error({ ifname: this.ifname, err: error.message }, 'cannot run the DHCP client (busybox udhcpc)'));
    child.stderr!.on('data', (chunk: Buffer) => this.log.debug({ ifname: this.ifname, udhcpc: chunk.toString().trim() }, 'udhcpc'));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith(LEASE_LINE)) return;
      const [event, address, mask, router] = line.slice(LEASE_LINE.length).split(' ');
      if ((event === 'bound' || event === 'renew') && address) {
        onLease({ address, prefixLength: Number(mask) || 24, router: router || undefined });
      } else if (event === 'deconfig' || event === 'nak' || event === 'leasefail') {
        onLost();
      }
    });
  }

  stop(): void {
    this.child?.kill();
    this.child = undefined;
  }
}

export interface RouteSlot {
  ifname: string;
  /** Routing table number, and the ip rule's priority. */
  table: number;
  /** MPTCP endpoint id (1..255). */
  endpointId: number;
}

async function ignoreFailure(promise: Promise<unknown>): Promise<void> {
  await promise.catch(() => undefined);
}

function setSysctl(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch {
    // absent on kernels without the feature; the routing still works without it
  }
}

/** Policy routing and the MPTCP endpoint of one identity, for one lease. */
export async function applyLease(slot: RouteSlot, lease: Lease, mptcp: boolean): Promise<void> {
  const { ifname, table, endpointId } = slot;
  // Several identities may share a subnet: answer ARP only for our own address, check sources loosely.
  setSysctl(`/proc/sys/net/ipv4/conf/${ifname}/arp_ignore`, '1');
  setSysctl(`/proc/sys/net/ipv4/conf/${ifname}/arp_announce`, '2');
  setSysctl(`/proc/sys/net/ipv4/conf/${ifname}/rp_filter`, '2');
  await releaseLease(slot);
  const prefix = `${lease.address}/${lease.prefixLength}`;
  await run('ip', ['addr', 'add', prefix, 'dev', ifname]);
  await run('ip', ['route', 'replace', `${networkOf(lease.address, lease.prefixLength)}/${lease.prefixLength}`, 'dev', ifname, 'src', lease.address, 'table', String(table)]);
  if (lease.router) await run('ip', ['route', 'replace', 'default', 'via', lease.router, 'dev', ifname, 'table', String(table)]);
  await run('ip', ['rule', 'add', 'from', lease.address, 'lookup', String(table), 'priority', String(table)]);
  if (mptcp) await run('ip', ['mptcp', 'endpoint', 'add', lease.address, 'dev', ifname, 'id', String(endpointId), 'subflow']);
}

/** Removes what applyLease set up; harmless when nothing is there. */
export async function releaseLease(slot: RouteSlot): Promise<void> {
  await ignoreFailure(run('ip', ['mptcp', 'endpoint', 'delete', 'id', String(slot.endpointId)]));
  await ignoreFailure(run('ip', ['rule', 'del', 'priority', String(slot.table)]));
  await ignoreFailure(run('ip', ['route', 'flush', 'table', String(slot.table)]));
  await ignoreFailure(run('ip', ['addr', 'flush', 'dev', slot.ifname]));
}

/** Lets one MPTCP connection use as many subflows as there are identities. */
export async function setMptcpLimits(subflows: number): Promise<void> {
  await run('ip', ['mptcp', 'limits', 'set', 'subflow', String(subflows), 'add_addr_accepted', String(subflows)]);
}

/** The priority of destination rules: after the identities' own from-address rules (priority = their table), so a pooled stream's extra subflows still leave by their own tables. */
export function destinationRulePriority(routingTableBase: number): number {
  return routingTableBase + 100;
}

/** Removes destination rules an agent that ended mid-migration left: they would point at tables that now route elsewhere. */
export async function clearDestinationRules(priority: number): Promise<void> {
  for (let i = 0; i < 256; i++) {
    if (!(await run('ip', ['rule', 'del', 'priority', String(priority)]).then(() => true, () => false))) return;
  }
}

/** Sends traffic to `destination` through routing table `table`, for a connection that cannot bind its source (QEMU's migration stream). */
export async function routeDestination(destination: string, table: number, priority: number): Promise<void> {
  await run('ip', ['rule', 'add', 'to', destination, 'lookup', String(table), 'priority', String(priority)]);
}

export async function unrouteDestination(destination: string, table: number, priority: number): Promise<void> {
  await ignoreFailure(run('ip', ['rule', 'del', 'to', destination, 'lookup', String(table), 'priority', String(priority)]));
}
