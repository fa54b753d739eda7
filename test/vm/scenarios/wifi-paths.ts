/**
 * In the VM: the agent's own traffic on trusted, pooled WiFi paths. Three trusted (WPA2) APs and
 * one open AP, the open one the most attractive; behind all four (network namespace `ap`) a
 * CloudHub-compatible server and a meta-edge agent on 10.0.9.1. The edge agent, with four
 * identities, must keep its cloud link and peer traffic on trusted identities, pool a live
 * migration over every trusted identity with MPTCP and finish it when one subflow's AP vanishes
 * midway, move the link when its AP vanishes without losing a report, and wait rather than use
 * the open network when no trusted identity is left. APs only go: one coming back takes from
 * seconds to minutes to be associated again, too long to wait for here.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CloudStatus } from '../../../src/cloud/edgehub.js';
import type { DeviceDetail } from '../../../src/twin/routes.js';
import type { WifiView } from '../../../src/wifi/wifi.js';
import type { MigrationResult } from '../../../src/workloads/migrate-out.js';
import { spawnAgent, type AgentProcess } from '../../support/agent-process.js';
import { CLI, connectionsToServer, type Connection, IMAGES, lastTick, metaPeer, openFarSide, peerIdentity, SERVER, sleep, startHub, startMeta, stopAgents, until as untilSeen } from '../far-side.js';
import { startScenario, writeResult } from '../scenario.js';
import { WifiTestbed, type ApSpec } from '../wifi-testbed.js';

const APS: Record<string, ApSpec> = {
  trustA: { ssid: 'trustA', channel: 1, subnet: 1, passphrase: 'trusted-pass-1', utilization: 120 },
  trustB: { ssid: 'trustB', channel: 6, subnet: 2, passphrase: 'trusted-pass-2', utilization: 120 },
  trustC: { ssid: 'trustC', channel: 6, subnet: 4, passphrase: 'trusted-pass-3', utilization: 120 },
  openD: { ssid: 'openD', channel: 1, subnet: 3, utilization: 0 },
};

const { result, step } = startScenario('wifi-paths', 420_000);
const testbed = new WifiTestbed({ apRadios: 4, channels: 2 });
const agents: AgentProcess[] = [];
const sh = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8' });
const until = <T>(what: string, probe: () => Promise<T | undefined | false>, intervalMs?: number) => untilSeen(what, probe, result, intervalMs);

try {
  step('APs, the far side');
  for (const spec of Object.values(APS)) await testbed.startAp(spec);
  openFarSide();
  const hub = await startHub();
  const edgeData = '/tmp/edge';
  const metaData = '/tmp/meta';
  const edgeFingerprint = peerIdentity(edgeData, 'edge');
  const meta = await startMeta(metaData, edgeFingerprint);
  agents.push(meta.agent);

  step('the edge agent');
  mkdirSync(join(edgeData, 'profiles'), { recursive: true });
  writeFileSync(
    join(edgeData, 'agent.json'),
    JSON.stringify({
      runDir: join(edgeData, 'run'),
      wifi: {
        enabled: true,
        radio: testbed.stationInterface,
        identities: 4,
        networks: Object.values(APS).map(({ ssid, passphrase }) => ({ ssid, passphrase })),
        evaluateIntervalMs: 1000,
        scanIntervalMs: 4000,
        avoidMs: 5000,
      },
      cloud: { enabled: true, server: SERVER, httpsPort: hub.httpsPort, websocketPort: hub.wsPort, token: hub.token, heartbeatMs: 1000, nodeStatusIntervalMs: 2000 },
      workloads: {
        enabled: true,
        images: [IMAGES],
        workloads: [{ name: 'ticker', image: 'unikernel-ticker' }],
        listen: { host: '127.0.0.1', port: 7444 },
        peers: [metaPeer(peerIdentity(metaData, 'meta'))],
        // Slow enough to lose an AP midway (QEMU 7.2 under TCG loses guest RAM below ~1.5 MiB/s); a pause long enough to finish at that pace.
        migrationBandwidthMiBps: Number(process.env.PATHS_MIGRATION_MIBPS ?? 2),
        migrationDowntimeLimitMs: 3000,
      },
    }),
  );
  const edge = await spawnAgent(['--config', join(edgeData, 'agent.json'), '--data', edgeData, '--profiles', join(edgeData, 'profiles'), '--node', 'edge']);
  agents.push(edge);
  const get = async <T>(path: string) => (await (await edge.api(path)).json()) as T;
  const wifi = () => get<WifiView>('/api/v1/wifi');
  const cloud = () => get<CloudStatus>('/api/v1/cloud');

  step('three identities, the cloud link on a trusted one');
  result.ready = await until('three identities addressed', async () => {
    const view = await wifi();
    result.lastSeen = view;
    return 'identities' in view && view.identities.every((i) => i.status === 'connected' && i.address) && view;
  });
  result.cloudFirst = await until('the cloud link up', async () => {
    const status = await cloud();
    return status.link.connected && status.link.source && status;
  });
  result.connectionsFirst = connectionsToServer();

  step('reports flowing');
  await hub.ask('device edge');
  await until('10 reports at the cloud', async () => ((await hub.ask('reports')).versions as number[]).length >= 10);

  step('the ticker runs');
  await edge.api('/api/v1/workloads', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ticker' }) });
  const before = await until('ticks at the edge', async () => {
    const detail = await get<{ console: string }>('/api/v1/workloads/ticker');
    const tick = lastTick(detail.console);
    return tick && tick.tick >= 2 && tick;
  });
  result.tickBefore = before;

  step('a pooled migration that loses an AP midway');
  const ready = result.ready as WifiView & { identities: Array<{ name: string; ssid: string; address: string; trusted: boolean }> };
  const firstSource = (result.cloudFirst as CloudStatus).link.source!;
  const migrationPath = (await wifi()).paths.migration as { identity?: string; address?: string };
  result.migrationPath = migrationPath;
  let settled = false;
  const migrating = edge
    .api('/api/v1/workloads/ticker/migrate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peer: 'meta' }) })
    .then(async (response) => ({ status: response.status, body: (await response.json()) as MigrationResult }))
    .finally(() => (settled = true));
  // Polled while the stream runs; a migration that ends first leaves what was seen for the test to show.
  const seen: Array<{ atMs: number; connections: Connection[] }> = [];
  const startedAt = performance.now();
  result.subflows = await until(
    'a subflow of the migration stream from each trusted identity',
    async () => {
      const connections = connectionsToServer();
      seen.push({ atMs: Math.round(performance.now() - startedAt), connections });
      const subflows = connections.filter((c) => c.info.includes('tcp-ulp-mptcp'));
      return (subflows.length >= 3 || settled) && subflows;
    },
    50,
  );
  result.seenDuringMigration = seen.slice(-5);
  result.mptcpEndpoints = sh('ip', ['mptcp', 'endpoint', 'show']);
  // A subflow's AP other than the one the agent's own connections use: the migration must finish on the rest.
  const subflowAp = ready.identities.find((i) => i.trusted && i.name !== migrationPath.identity)!.ssid;
  result.migrationApKilled = subflowAp;
  result.killedMidway = !settled;
  await testbed.stopAp(subflowAp, 'SIGKILL');
  result.migration = await migrating;
  result.migrationAt = await get('/api/v1/workloads/ticker');

  step('the cloud link’s AP vanishes');
  const lostAp = ready.identities.find((i) => i.address === firstSource)!.ssid;
  result.lostAp = lostAp;
  result.cloudVersionAtKill = Math.max(...((await hub.ask('reports')).versions as number[]));
  await testbed.stopAp(lostAp, 'SIGKILL');
  const killedAt = performance.now();
  result.cloudMoved = await until('the cloud link up from another address', async () => {
    const status = await cloud();
    return status.link.connected && status.link.source && status.link.source !== firstSource && status;
  });
  result.moveMs = Math.round(performance.now() - killedAt);
  result.connectionsMoved = connectionsToServer();
  // Every report the edge made until now must reach the cloud: no gap in the versions.
  const edgeVersion = (await get<DeviceDetail>('/api/v1/devices/default/counter-01')).twin.count?.actual_version?.edge;
  result.edgeVersionAtMove = edgeVersion;
  result.reportsAfterMove = await until('the cloud caught up', async () => {
    const reports = (await hub.ask('reports')) as { versions: number[]; redelivered: number };
    return Math.max(...reports.versions) >= Math.max(Number(edgeVersion ?? 0), result.cloudVersionAtKill as number) + 5 && reports;
  });

  step('the ticker at the meta-edge');
  if ((result.migration as { status: number }).status !== 200) throw new Error(`the migration failed: ${JSON.stringify(result.migration)}`);
  result.metaTicks = await until('ticks at the meta-edge past the edge’s', async () => {
    const detail = meta.api('GET', '/api/v1/workloads/edge.ticker') as { state?: string; console?: string };
    const tick = lastTick(detail.console ?? '');
    const memory = /mem=(\w+)/.exec((detail.console ?? '').trimEnd().split('\n').at(-1) ?? '')?.[1];
    return tick && tick.tick > before.tick + 1 && { state: detail.state, memory, ...tick };
  }, 500);

  step('no trusted identity left');
  const remaining = Object.keys(APS).filter((ssid) => ssid.startsWith('trust') && testbed.aps.has(ssid));
  for (const ssid of remaining) await testbed.stopAp(ssid, 'SIGKILL');
  result.cloudWaiting = await until('the cloud link waiting', async () => {
    const status = await cloud();
    return !status.link.connected && status.link.path.via === 'none' && status;
  });
  await sleep(3000);
  result.connectionsWaiting = connectionsToServer();
  result.wifiWaiting = await wifi();
  result.cliCloud = sh(process.execPath, [CLI, 'cloud', '--api', edge.apiUrl, '--data', edgeData]);
  result.cliWifi = sh(process.execPath, [CLI, 'wifi', '--api', edge.apiUrl, '--data', edgeData]);
  hub.stop();
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await stopAgents(agents);
  await testbed.stop();
  writeResult('wifi-paths', result);
}
