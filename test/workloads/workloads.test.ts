/**
 * Workloads between two agents (child processes) on loopback, each with its own data, peer
 * identity and QEMU (TCG): the edge runs the shipped unikernel and Linux service, live-migrates
 * to the meta-edge (which has no images and fetches them over the pinned mutual-TLS channel)
 * and back, survives migrations cut off midway, lets its offload policy move workloads on
 * reported battery and mode, and starts a workload on its first connection (Jitsu).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../../src/http/router.js';
import { loadOrCreateIdentity } from '../../src/workloads/identity.js';
import { PeerClient, PeerError } from '../../src/workloads/peers.js';
import { identityDir, type MigrationResult, type PolicyState, type WorkloadDetail, type WorkloadList } from '../../src/workloads/index.js';
import { createLogger } from '../../src/log.js';
import { CLI, spawnAgent, tempDir, type AgentProcess } from '../support/agent.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';
import { qemuUnder } from '../support/qemu.js';
import { ensureImages, IMAGES } from '../support/images.js';

const TICK = /unikernel boot=([0-9a-f]{16}) tick=(\d+)/g;

interface Side {
  name: string;
  data: string;
  port: number;
  fingerprint: string;
  agent?: AgentProcess;
}

function lastTick(console: string): { boot: string; tick: number } | undefined {
  const ticks = [...console.matchAll(TICK)];
  const last = ticks.at(-1);
  return last && { boot: last[1]!, tick: Number(last[2]) };
}

async function side(name: string): Promise<Side> {
  const data = tempDir(`workloads-${name}-`);
  const fingerprint = execFileSync(process.execPath, [CLI, 'workloads', 'identity', '--data', data, '--node', name], { encoding: 'utf8' }).trim();
  return { name, data, port: await freePort(), fingerprint };
}

describe('workloads between two agents', () => {
  let edge: Side;
  let meta: Side;
  let webPort: number;

  const api = async <T>(s: Side, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await s.agent!.api(`/api/v1/workloads${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as T };
  };
  const workload = async (s: Side, name: string) => (await api<WorkloadDetail>(s, 'GET', `/${name}`)).body;

  function configFor(s: Side, peer: Side, extra: Record<string, unknown>): string {
    const file = join(s.data, 'agent.json');
    const workloads = {
      enabled: true,
      listen: { host: '127.0.0.1', port: s.port },
      peers: [{ name: peer.name, url: `https://127.0.0.1:${peer.port}`, fingerprint: peer.fingerprint, trusted: true }],
      ...extra,
    };
    // Each agent its own run directory: QEMU sockets and consoles are named after the workload.
    writeFileSync(file, JSON.stringify({ workloads, runDir: join(s.data, 'run') }));
    return file;
  }

  const start = async (s: Side, config: string) => {
    s.agent = await spawnAgent(['--config', config, '--data', s.data, '--profiles', tempDir(), '--node', s.name]);
  };

  let edgeConfig: string;
  let metaConfig: string;

  beforeAll(async () => {
    ensureImages();
    edge = await side('edge');
    meta = await side('meta');
    webPort = await freePort();
    edgeConfig = configFor(edge, meta, {
      images: [IMAGES],
      workloads: [
        { name: 'ticker', image: 'unikernel-ticker' },
        { name: 'pinned', image: 'unikernel-ticker', placement: 'local' },
        { name: 'svc', image: 'linux-service', placement: 'local' },
        { name: 'web', image: 'linux-service', ports: [{ guest: 8080, host: webPort }], onDemand: { idleTimeoutMs: 3000 } },
      ],
      // This host's own load, memory and temperature are whatever the test run makes them: only
      // the battery and mode the test reports count.
      policy: { enabled: true, target: 'meta', intervalMs: 300, holdMs: 1000, cpuLoad: null, freeMemoryMiB: null, temperature: null },
      migrationBandwidthMiBps: 16,
    });
    // The meta-edge has no images of its own: what it runs, it fetches from the edge.
    metaConfig = configFor(meta, edge, { images: [] });
    await start(edge, edgeConfig);
    await start(meta, metaConfig);
  }, 60_000);

  afterAll(async () => {
    for (const s of [edge, meta]) {
      if (!s?.agent) continue;
      s.agent.child.kill('SIGTERM');
      await s.agent.exited;
    }
  });

  it('runs the unikernel under QEMU (TCG here), with its console captured', async () => {
    const { status, body } = await api<WorkloadDetail>(edge, 'POST', '', { name: 'ticker' });
    expect(status).toBe(200);
    expect(body).toMatchObject({ name: 'ticker', state: 'running', accel: 'tcg' });
    const ticking = await waitFor('two ticks on the console', async () => ((lastTick((await workload(edge, 'ticker')).console)?.tick ?? 0) >= 2 ? true : undefined), { timeoutMs: 20_000, intervalMs: 250 });
    expect(ticking).toBe(true);
  }, 30_000);

  it('pauses and resumes it, and restarts it when its QEMU dies (restart: on-failure)', async () => {
    expect((await api<WorkloadDetail>(edge, 'POST', '/ticker/pause')).body).toMatchObject({ state: 'paused' });
    const paused = lastTick((await workload(edge, 'ticker')).console)!;
    await sleep(2500);
    expect(lastTick((await workload(edge, 'ticker')).console)!.tick).toBeLessThanOrEqual(paused.tick + 1);
    expect((await api<WorkloadDetail>(edge, 'POST', '/ticker/resume')).body).toMatchObject({ state: 'running' });
    await waitFor('ticks again', async () => ((lastTick((await workload(edge, 'ticker')).console)?.tick ?? 0) > paused.tick + 1 ? true : undefined), { timeoutMs: 10_000, intervalMs: 250 });
    const { pid } = await workload(edge, 'ticker');
    process.kill(pid!, 'SIGKILL');
    const restarted = await waitFor('the restart policy at work', async () => {
      const now = await workload(edge, 'ticker');
      return now.state === 'running' && now.pid !== undefined && now.pid !== pid ? now : undefined;
    }, { timeoutMs: 15_000, intervalMs: 200 });
    expect(restarted.history.some((h) => h.event === 'exited')).toBe(true);
    await waitFor('the new guest ticking', async () => ((lastTick((await workload(edge, 'ticker')).console)?.tick ?? 0) >= 1 ? true : undefined), { timeoutMs: 15_000, intervalMs: 250 });
  }, 45_000);

  it('live-migrates it to the meta-edge, which fetches the image over the pinned channel and keeps it as the edge’s: state survives', async () => {
    const before = lastTick((await workload(edge, 'ticker')).console)!;
    const { status, body } = await api<MigrationResult>(edge, 'POST', '/ticker/migrate', { peer: 'meta' });
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'running', artifactsFetched: 1 });
    expect(body.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(body.totalTimeMs).toBeGreaterThan(0);
    // The meta-edge keeps a peer's workload under the peer's name.
    const there = await workload(meta, 'edge.ticker');
    expect(there).toMatchObject({ state: 'running', origin: 'peer:edge' });
    const after = await waitFor('ticks at the meta-edge', async () => {
      const tick = lastTick((await workload(meta, 'edge.ticker')).console);
      return tick && tick.tick > before.tick ? tick : undefined;
    }, { timeoutMs: 15_000, intervalMs: 250 });
    expect(after.boot).toBe(before.boot);
    expect(await workload(edge, 'ticker')).toMatchObject({ state: 'migrated', movedTo: 'meta' });
    expect((await workload(meta, 'edge.ticker')).history.some((h) => h.event === 'migrated in' && typeof h.detail?.downtimeMs === 'number')).toBe(true);
  }, 60_000);

  it('runs the peer’s workload again when the meta-edge restarts, from the peer’s image it kept; the edge’s policy leaves it there (an operator moved it)', async () => {
    meta.agent!.child.kill('SIGTERM');
    await meta.agent!.exited;
    await start(meta, metaConfig);
    const again = await waitFor('edge.ticker ticking at the meta-edge again', async () => {
      const there = await workload(meta, 'edge.ticker');
      return there.state === 'running' && lastTick(there.console) ? there : undefined;
    }, { timeoutMs: 20_000, intervalMs: 250 });
    expect(again).toMatchObject({ origin: 'peer:edge', definition: { network: 'restricted' } });
    expect(again.history[0]).toMatchObject({ event: 'started' });
    // The edge's offload policy (every 300 ms, nothing telling it to offload) brings back only what it moved itself.
    await sleep(2000);
    expect(await workload(edge, 'ticker')).toMatchObject({ state: 'migrated', movedTo: 'meta' });
  }, 60_000);

  it('brings it back, still the same guest', async () => {
    const away = lastTick((await workload(meta, 'edge.ticker')).console)!;
    const { status } = await api(edge, 'POST', '/ticker/return');
    expect(status).toBe(200);
    expect(await workload(edge, 'ticker')).toMatchObject({ state: 'running', origin: 'local' });
    const back = await waitFor('ticks back at the edge', async () => {
      const tick = lastTick((await workload(edge, 'ticker')).console);
      return tick && tick.tick > away.tick ? tick : undefined;
    }, { timeoutMs: 15_000, intervalMs: 250 });
    expect(back.boot).toBe(away.boot);
    expect((await api<WorkloadList>(meta, 'GET', '')).body.workloads.find((w) => w.name === 'edge.ticker')).toBeUndefined();
  }, 60_000);

  it('refuses an image for another architecture, and an unknown peer, with the reason', async () => {
    const manifest = JSON.parse(readFileSync(join(IMAGES, 'unikernel-ticker/manifest.json'), 'utf8')) as Record<string, unknown>;
    const edgeIdentity = loadOrCreateIdentity(identityDir(edge.data), 'edge');
    const asEdge = new PeerClient(edgeIdentity, createLogger('silent'));
    const metaPeer = { name: 'meta', url: `https://127.0.0.1:${meta.port}`, fingerprint: meta.fingerprint };
    const offer = (m: Record<string, unknown>) => asEdge.request(metaPeer, 'POST', '/v1/migrations', { definition: { name: 'other', image: 'unikernel-ticker' }, manifest: m, certificate: edgeIdentity.certPem });
    await expect(offer({ ...manifest, architecture: 'aarch64' })).rejects.toThrow(/image is for aarch64, this host is x86_64/);
    await expect(offer({ ...manifest, runtime: 'firecracker' })).rejects.toThrow(/runtime "firecracker" is not supported/);
    const stranger = new PeerClient(loadOrCreateIdentity(tempDir('stranger-'), 'stranger'), createLogger('silent'));
    await expect(stranger.request(metaPeer, 'GET', '/v1/workloads')).rejects.toThrow(PeerError);
    expect((await api<WorkloadList>(meta, 'GET', '')).body.workloads.filter((w) => w.pid)).toEqual([]);
  });

  it('refuses an artifact whose bytes do not match its digest, before anything starts at the target', async () => {
    await api(edge, 'POST', '', { name: 'svc' });
    const manifest = JSON.parse(readFileSync(join(IMAGES, 'linux-service/manifest.json'), 'utf8')) as { artifacts: Array<{ role: string; sha256: string }> };
    const initrd = join(edge.data, 'workloads/images', manifest.artifacts.find((a) => a.role === 'initrd')!.sha256);
    const original = readFileSync(initrd);
    const damaged = Buffer.from(original);
    damaged.writeUInt8(damaged.readUInt8(damaged.length - 1) ^ 0xff, damaged.length - 1);
    chmodSync(initrd, 0o600);
    writeFileSync(initrd, damaged);
    try {
      const { status, body } = await api<ErrorBody>(edge, 'POST', '/svc/migrate', { peer: 'meta' });
      expect(status).toBe(422);
      expect(body.reason).toMatch(/^migration of svc to meta failed at offer: peer meta answered 422 to POST \/v1\/migrations: artifact initrd .* refused: .*sha256/);
    } finally {
      writeFileSync(initrd, original);
    }
    expect(await workload(edge, 'svc')).toMatchObject({ state: 'running', origin: 'local' });
    expect((await api<WorkloadList>(meta, 'GET', '')).body.workloads.filter((w) => w.name === 'edge.svc')).toEqual([]);
    const stray = qemuUnder(meta.data);
    expect(stray).toEqual([]);
  }, 60_000);

  it('keeps the workload at the source when the target is killed mid-migration, and nothing stays half-started there', async () => {
    // A 128 MiB Linux guest at 16 MiB/s takes seconds to move: time to pull the plug midway.
    const migrating = api<ErrorBody>(edge, 'POST', '/svc/migrate', { peer: 'meta' });
    await waitFor('the migration under way', () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(join(meta.data, 'run')), { intervalMs: 20, timeoutMs: 10_000 });
    await sleep(1000);
    meta.agent!.child.kill('SIGKILL');
    const { status } = await migrating;
    expect(status).toBeGreaterThanOrEqual(400);
    expect(await workload(edge, 'svc')).toMatchObject({ state: 'running', origin: 'local' });
    expect(await (await edge.agent!.api('/api/v1/workloads/svc')).json()).toMatchObject({ pid: expect.any(Number) });
    await api(edge, 'DELETE', '/svc');
    await start(meta, metaConfig);
    const left = (await api<WorkloadList>(meta, 'GET', '')).body.workloads;
    expect(left.filter((w) => w.pid || w.state === 'incoming')).toEqual([]);
    const stray = qemuUnder(meta.data);
    expect(stray).toEqual([]);
  }, 60_000);

  it('leaves nothing at the target when the source is killed mid-migration, and runs the workload again at the source', async () => {
    await api(edge, 'POST', '', { name: 'svc' });
    const migrating = api(edge, 'POST', '/svc/migrate', { peer: 'meta' }).catch(() => undefined);
    await waitFor('the migration under way', () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(join(meta.data, 'run')), { intervalMs: 20, timeoutMs: 15_000 });
    await sleep(1000);
    edge.agent!.child.kill('SIGKILL');
    await migrating;
    await waitFor('nothing left at the meta-edge', () => !execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes(join(meta.data, 'run', 'workloads', 'edge.svc')), { timeoutMs: 20_000, intervalMs: 200 });
    expect((await api<WorkloadList>(meta, 'GET', '')).body.workloads.filter((w) => w.name === 'edge.svc')).toEqual([]);
    await start(edge, edgeConfig);
    expect(await workload(edge, 'svc')).toMatchObject({ state: 'running', origin: 'local', pid: expect.any(Number) });
    // One QEMU for it: the one the killed agent left was ended, not run twice.
    const copies = qemuUnder(join(edge.data, 'run', 'workloads', 'svc'));
    expect(copies).toHaveLength(1);
    await api(edge, 'DELETE', '/svc');
  }, 90_000);

  it('offloads on a low battery reported by the robot, not a workload pinned local, and brings them back once charged', async () => {
    await api(edge, 'POST', '', { name: 'ticker' });
    await api(edge, 'POST', '', { name: 'pinned' });
    expect(await workload(edge, 'ticker')).toMatchObject({ state: 'running' });
    await api(edge, 'PUT', '/telemetry', { battery: 12, charging: false });
    await waitFor('ticker offloaded to the meta-edge', async () => (await workload(edge, 'ticker')).state === 'migrated', { timeoutMs: 30_000, intervalMs: 250 });
    const policy = (await api<PolicyState>(edge, 'GET', '/policy')).body;
    expect(policy.last?.reasons.join(' '), JSON.stringify(policy)).toMatch(/battery 12 %/);
    expect(await workload(edge, 'pinned')).toMatchObject({ state: 'running' });
    // Between the thresholds (out 20 %, back 40 %): it stays where it is.
    await api(edge, 'PUT', '/telemetry', { battery: 30 });
    await sleep(2500);
    expect(await workload(edge, 'ticker')).toMatchObject({ state: 'migrated' });
    await api(edge, 'PUT', '/telemetry', { battery: 80, charging: true });
    await waitFor('ticker back at the edge', async () => (await workload(edge, 'ticker')).state === 'running', { timeoutMs: 30_000, intervalMs: 250 });
    await api(edge, 'PUT', '/telemetry', { mode: 'mission' });
    await waitFor('ticker offloaded during the mission', async () => (await workload(edge, 'ticker')).state === 'migrated', { timeoutMs: 30_000, intervalMs: 250 });
    await api(edge, 'PUT', '/telemetry', { mode: 'idle' });
    await waitFor('ticker back after the mission', async () => (await workload(edge, 'ticker')).state === 'running', { timeoutMs: 30_000, intervalMs: 250 });
  }, 120_000);

  it('starts the Linux service on its first connection, stops it when idle, and resumes it from a snapshot', async () => {
    const first = performance.now();
    const cold = await fetch(`http://127.0.0.1:${webPort}/`);
    const coldMs = performance.now() - first;
    expect(cold.status).toBe(200);
    await cold.text();
    await waitFor('web idle', async () => (await workload(edge, 'web')).state === 'idle', { timeoutMs: 30_000, intervalMs: 250 });
    const second = performance.now();
    const resumed = await fetch(`http://127.0.0.1:${webPort}/`);
    const resumeMs = performance.now() - second;
    expect(resumed.status).toBe(200);
    const { onDemand } = (await api<WorkloadList>(edge, 'GET', '')).body;
    expect(onDemand.find((o) => o.name === 'web')).toMatchObject({ starts: 1, resumes: 1 });
    expect(resumeMs).toBeLessThan(coldMs);
  }, 90_000);
});
