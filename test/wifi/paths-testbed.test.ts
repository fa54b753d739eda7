/**
 * The agent's own traffic on trusted, pooled WiFi paths, in the VM testbed (scenario
 * test/vm/scenarios/wifi-paths.ts): three trusted APs and one open AP on the simulated radio, a
 * CloudHub-compatible server and a meta-edge agent behind them.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { CloudStatus } from '../../src/cloud/edgehub.js';
import type { IdentityState } from '../../src/wifi/state.js';
import type { WifiView } from '../../src/wifi/wifi.js';
import { runScenario, VM_TIMEOUT_MS } from '../support/scenario.js';

type Addressed = IdentityState & { address: string };
interface Connection {
  local: string;
  peer: string;
  info: string;
}

describe('the agent’s own traffic on trusted WiFi paths', () => {
  let result: Record<string, unknown>;
  let trusted: string[];
  let open: string;
  const addressOf = (connection: Connection) => connection.local.replace(/:\d+$/, '');

  beforeAll(async () => {
    result = await runScenario('wifi-paths');
    const ready = (result.ready as WifiView & { identities: Addressed[] }).identities;
    trusted = ready.filter((i) => i.trusted).map((i) => i.address);
    open = ready.find((i) => !i.trusted)!.address;
  }, VM_TIMEOUT_MS);

  it('associates an identity with each AP: the two WPA2 ones trusted, the open one (the most attractive) not', () => {
    const ready = (result.ready as WifiView & { identities: Addressed[] }).identities;
    expect(new Set(ready.map((i) => i.ssid))).toEqual(new Set(['trustA', 'trustB', 'trustC', 'openD']));
    expect(ready.find((i) => i.ssid === 'openD')!.trusted).toBe(false);
    expect(trusted).toHaveLength(3);
  });

  it('opens the cloud link from a trusted identity’s address, never from the open one (ss)', () => {
    const cloud = result.cloudFirst as CloudStatus;
    expect(cloud.link.path).toMatchObject({ via: 'identity', trusted: true });
    expect(trusted).toContain(cloud.link.source);
    const connections = result.connectionsFirst as Connection[];
    expect(connections.length).toBeGreaterThan(0);
    for (const connection of connections) expect(trusted).toContain(addressOf(connection));
  });

  it('moves the link to the other trusted identity when its AP vanishes, and the cloud gets every report', () => {
    const moved = result.cloudMoved as CloudStatus;
    const first = (result.cloudFirst as CloudStatus).link.source;
    expect(moved.link.source).not.toBe(first);
    expect(trusted).toContain(moved.link.source);
    for (const connection of result.connectionsMoved as Connection[]) expect(addressOf(connection)).not.toBe(open);
    const { versions } = result.reportsAfterMove as { versions: number[] };
    const unique = [...new Set(versions)].sort((a, b) => a - b);
    const gaps = unique.filter((version, i) => i > 0 && version !== unique[i - 1]! + 1);
    expect(gaps).toEqual([]);
    expect(unique.at(-1)).toBeGreaterThan(result.cloudVersionAtKill as number);
  });

  it('pools the migration stream over every trusted identity with MPTCP (ss -tni), and no subflow over the open network', () => {
    const subflows = result.subflows as Connection[];
    // One MPTCP connection: every subflow to the same port of the meta-edge.
    expect(new Set(subflows.map((c) => c.peer)).size).toBe(1);
    const sources = new Set(subflows.map(addressOf));
    for (const address of trusted) expect(sources).toContain(address);
    expect(sources).not.toContain(open);
    expect(result.mptcpEndpoints).not.toContain(open);
  });

  it('completes the migration when the AP of one of its subflows vanishes midway: same boot, ticks going on at the meta-edge', () => {
    const migration = result.migration as { status: number; body: { status: string; totalTimeMs: number } };
    expect(migration.status).toBe(200);
    expect(migration.body.status).toBe('running');
    const before = result.tickBefore as { boot: string; tick: number };
    expect(result.killedMidway).toBe(true);
    // Not `mem=ok`: QEMU 7.2 under TCG itself loses guest RAM in slow migrations now and then, with or without MPTCP; TLS over the stream would fail the migration on any damage in transit.
    expect(result.metaTicks).toMatchObject({ state: 'running', boot: before.boot });
    expect((result.metaTicks as { tick: number }).tick).toBeGreaterThan(before.tick);
  });

  it('waits rather than use the open network when no trusted identity is left, and says so in the API and the CLI', () => {
    const cloud = result.cloudWaiting as CloudStatus;
    expect(cloud.link.path).toEqual({ via: 'none', reason: 'no trusted WiFi identity is associated (1 untrusted one(s) are; wifi.fallback: any would use them)' });
    expect(result.connectionsWaiting).toEqual([]);
    expect((result.wifiWaiting as WifiView).paths.peers).toMatchObject({ via: 'none' });
    expect(result.cliCloud).toMatch(/cloud link waits: no trusted WiFi identity is associated/);
    expect(result.cliWifi).toMatch(/agent traffic: cloud waits: no trusted WiFi identity is associated/);
  });
});
