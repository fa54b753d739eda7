/**
 * Runs inside the VM (index.ts boots it): two trusted APs, the meta-edge behind them, and the
 * edge agent with two identities. The 128 MiB Linux guest is live-migrated edge → meta, in
 * alternating rounds, pooled over both trusted identities (MPTCP, a subflow each) and over one
 * identity (the other AP taken down for the round); then once more pooled, with the AP of the
 * stream's first subflow killed midway. Writes bench-paths.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WifiView } from '../../src/wifi/wifi.js';
import type { MigrationResult } from '../../src/workloads/migrate-out.js';
import { spawnAgent, type AgentProcess } from '../../test/support/agent-process.js';
import { collectProblems, connectionsToServer, IMAGES, metaPeer, openFarSide, peerIdentity, sleep, startMeta, stopAgents, until as untilSeen } from '../../test/vm/far-side.js';
import { writeResult } from '../../test/vm/scenario.js';
import { WifiTestbed, type ApSpec } from '../../test/vm/wifi-testbed.js';
import type { Round } from './round.js';

const ROUNDS = Number(process.env.BENCH_PATHS_ROUNDS ?? 2);
/** Each guest runs this long before it moves, so that every round moves a guest in the same state. */
const RUN_BEFORE_MIGRATION_MS = 20_000;

const APS: Record<string, ApSpec> = {
  trustA: { ssid: 'trustA', channel: 1, subnet: 1, passphrase: 'trusted-pass-1' },
  trustB: { ssid: 'trustB', channel: 6, subnet: 2, passphrase: 'trusted-pass-2' },
};

const result: Record<string, unknown> = { rounds: [] as Round[] };
const testbed = new WifiTestbed({ apRadios: 2, channels: 2 });
const agents: AgentProcess[] = [];
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) => untilSeen(what, probe, result);

try {
  for (const spec of Object.values(APS)) await testbed.startAp(spec);
  openFarSide();
  const edgeData = '/tmp/edge';
  const metaData = '/tmp/meta';
  const meta = await startMeta(metaData, peerIdentity(edgeData, 'edge'));
  agents.push(meta.agent);
  result.metaProblems = collectProblems(meta.agent);
  const names = [...Array.from({ length: ROUNDS }, (_, i) => [`pooled-${i}`, `single-${i}`]).flat(), 'failover'];
  mkdirSync(join(edgeData, 'profiles'), { recursive: true });
  const config = {
    runDir: join(edgeData, 'run'),
    wifi: { enabled: true, radio: testbed.stationInterface, identities: 2, networks: Object.values(APS).map(({ ssid, passphrase }) => ({ ssid, passphrase })), evaluateIntervalMs: 1000, scanIntervalMs: 4000, avoidMs: 3000 },
    workloads: {
      enabled: true,
      images: [IMAGES],
      workloads: names.map((name) => ({ name, image: 'linux-service' })),
      listen: { host: '127.0.0.1', port: 7444 },
      peers: [metaPeer(peerIdentity(metaData, 'meta'))],
      // Under nested TCG a booting guest dirties its RAM faster than the simulated air moves it: a
      // pause this long lets every migration finish after its first pass, so the rounds compare
      // the paths' throughput, not how many passes each needed.
      migrationDowntimeLimitMs: 10_000,
      // About 1 MB/s through nested emulation: a 128 MiB guest takes one to two minutes.
      migrationTimeoutMs: 600_000,
    },
  };
  writeFileSync(join(edgeData, 'agent.json'), JSON.stringify(config));
  const edge = await spawnAgent(['--config', join(edgeData, 'agent.json'), '--data', edgeData, '--profiles', join(edgeData, 'profiles'), '--node', 'edge']);
  agents.push(edge);
  result.edgeProblems = collectProblems(edge);
  const post = (path: string, body: unknown) => edge.api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const trustedIdentities = async (count: number) =>
    until(`${count} trusted identities addressed`, async () => {
      const view = (await (await edge.api('/api/v1/wifi')).json()) as WifiView;
      result.lastSeen = view;
      return 'identities' in view && view.identities.filter((i) => i.trusted && i.address).length === count && view.paths.migration.via === 'identity' && view;
    });

  const migrate = async (name: string, kind: Round['kind'], duringStream?: () => Promise<void>): Promise<Round> => {
    await post('/api/v1/workloads', { name });
    await sleep(RUN_BEFORE_MIGRATION_MS);
    let done = false;
    const started = performance.now();
    const answer = post(`/api/v1/workloads/${name}/migrate`, { peer: 'meta' }).finally(() => (done = true));
    let subflows = 0;
    let acted = false;
    while (!done) {
      const seen = connectionsToServer().filter((c) => c.info.includes('tcp-ulp-mptcp')).length;
      subflows = Math.max(subflows, seen);
      if (duringStream && !acted && seen >= 2) {
        acted = true;
        await duringStream();
      }
      await sleep(100);
    }
    const response = await answer;
    const wallMs = Math.round(performance.now() - started);
    const body = (await response.json()) as MigrationResult & { reason?: string };
    // The guest goes, wherever it runs now: every round starts with both sides equally loaded.
    if (response.status === 200) meta.api('DELETE', `/api/v1/workloads/edge.${name}`);
    else await edge.api(`/api/v1/workloads/${name}`, { method: 'DELETE' });
    return { kind, status: response.status, totalTimeMs: body.totalTimeMs, downtimeMs: body.downtimeMs, transferredBytes: body.transferredBytes, wallMs, subflows, ...(body.reason ? { error: body.reason } : {}) };
  };

  const rounds = result.rounds as Round[];
  for (let i = 0; i < ROUNDS; i++) {
    await trustedIdentities(2);
    rounds.push(await migrate(`pooled-${i}`, 'pooled'));
    // One identity: trustB leaves (deauthenticating its station) for the round.
    await testbed.stopAp('trustB', 'SIGTERM');
    await trustedIdentities(1);
    rounds.push(await migrate(`single-${i}`, 'single'));
    await testbed.startAp(APS.trustB!);
  }
  await trustedIdentities(2);
  const view = (await (await edge.api('/api/v1/wifi')).json()) as WifiView & { identities: Array<{ name: string; ssid: string }> };
  const first = view.paths.migration.via === 'identity' ? view.paths.migration.identity : undefined;
  const lost = view.identities.find((i) => i.name === first)!.ssid;
  result.failoverKilled = lost;
  rounds.push(await migrate('failover', 'failover', () => testbed.stopAp(lost, 'SIGKILL')));
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await stopAgents(agents);
  await testbed.stop();
  writeResult('bench-paths', result);
}
