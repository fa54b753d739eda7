/**
 * Workloads against hostile guests and peers (issue 14): a guest's user networking reaches neither
 * the host's loopback services (the agent's API and MQTT broker, at 10.0.2.2) nor the LAN unless
 * its image asks for the LAN and this agent's config allows it, also after a migration; a peer's
 * offer is parsed tight, so nothing of the peer's reaches QEMU's option parser; its artifacts are
 * cut off past their declared size and at the transfer deadline; its images and workloads are kept
 * under its name; a TLS handshake flood is throttled while a pinned peer gets through, and its
 * refusals logged once per interval; guest RAM snapshots and consoles are private files.
 *
 * Real peers: two workloads modules (edge and meta) in this process, with their peer endpoints,
 * real QEMU (TCG) and the shipped images (linux-service probes from inside the guest with its
 * /cgi-bin/probe); a real agent for the host's API and broker. The hostile peer ("rogue") is this
 * project's own PeerServer, configured as one of meta's peers, serving artifacts that misbehave.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Streamed, type ErrorBody } from '../../src/http/router.js';
import { createLogger } from '../../src/log.js';
import { TelemetryModule } from '../../src/telemetry/index.js';
import { workloadsSection } from '../../src/workloads/config.js';
import { identityDir, loadOrCreateIdentity, type PeerIdentity } from '../../src/workloads/identity.js';
import { parseImageManifest } from '../../src/workloads/image.js';
import { WorkloadsModule, type MigrationResult, type WorkloadDetail, type WorkloadList, type WorkloadView } from '../../src/workloads/index.js';
import { PeerClient, PeerError, PeerServer, type PeerConfig, type PeerRoute } from '../../src/workloads/peers.js';
import { qemuArgs } from '../../src/workloads/qemu/args.js';
import { QemuRuntime } from '../../src/workloads/qemu/runtime.js';
import type { ImageManifest } from '../../src/workloads/types.js';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { freePort } from '../support/ports.js';
import { qemuUnder } from '../support/qemu.js';
import { sleep, waitFor } from '../support/wait.js';
import { serveRoutes, type ServedRoutes } from './serve-routes.js';
import { ensureImages, IMAGES } from '../support/images.js';
import { systemPaths } from '../../src/wifi/paths.js';

const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];

function newDir(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

function builtManifest(name: string): ImageManifest {
  const file = join(IMAGES, name, 'manifest.json');
  return parseImageManifest(JSON.parse(readFileSync(file, 'utf8')), file);
}

/** One agent's workloads: its module, its peer endpoint and identity, its routes served. */
interface Side {
  name: string;
  data: string;
  /** The runtime's directory: consoles, sockets, snapshots. */
  run: string;
  identity: PeerIdentity;
  peer: PeerConfig;
  module?: WorkloadsModule;
  routes?: ServedRoutes;
}

async function side(name: string): Promise<Side> {
  const data = newDir(`workloads-security-${name}-`);
  const identity = loadOrCreateIdentity(identityDir(data), name);
  return { name, data, run: join(data, 'run', 'workloads'), identity, peer: { name, url: `https://127.0.0.1:${await freePort()}`, fingerprint: identity.fingerprint } };
}

async function startSide(s: Side, config: Record<string, unknown>): Promise<void> {
  const telemetry = new TelemetryModule({ wifi: { state: () => ({ status: 'disabled', radio: 'wlan0' }) }, log });
  const workloads = v.parse(workloadsSection, { enabled: true, listen: { host: '127.0.0.1', port: Number(new URL(s.peer.url).port) }, ...config });
  s.module = new WorkloadsModule({ config: workloads, node: s.name, dataDir: s.data, runDir: join(s.data, 'run'), telemetry, paths: systemPaths, log });
  await s.module.start(new AbortController().signal);
  s.routes = await serveRoutes(s.module.routes, log);
}

const call = <T>(s: Side, method: string, path: string, body?: unknown) => s.routes!.call<T>(method, `/api/v1/workloads${path}`, body);
const workload = async (s: Side, name: string) => (await call<WorkloadDetail>(s, 'GET', `/${name}`)).body;
const listed = async (s: Side) => (await call<WorkloadList>(s, 'GET', '')).body.workloads;

/** The command line of the QEMU running workload `name` of `s`. */
function qemuOf(s: Side, name: string): string {
  const lines = qemuUnder(join(s.run, `${name}.qmp`));
  expect(lines, `one QEMU for ${name}`).toHaveLength(1);
  return lines[0]!;
}

const netdevOf = (s: Side, name: string) => /-netdev (\S+)/.exec(qemuOf(s, name))?.[1];

/** What the guest behind forwarded port `port` says when it tries to open a TCP connection to `target`. */
async function probe(port: number, target: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/cgi-bin/probe?${target}`, { signal: AbortSignal.timeout(20_000) });
  expect(response.status).toBe(200);
  return (await response.text()).trim();
}

async function waitReady(s: Side, name: string): Promise<void> {
  await waitFor(`${name} ready`, async () => (await workload(s, name)).console.includes('linux-service ready'), { timeoutMs: 60_000, intervalMs: 250 });
}

/** This host's first non-loopback IPv4 address: the LAN as a guest would see it. */
const lanAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i?.family === 'IPv4' && !i.internal)?.address;

async function listenAnywhere(): Promise<Server> {
  const server = createServer((socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  return server;
}

afterAll(() => {
  for (const dir of dirs) {
    expect(qemuUnder(dir)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('workload guests and peers', () => {
  let edge: Side;
  let meta: Side;
  let rogue: Side;
  let rogueServer: PeerServer;
  let host: TestAgent;
  let lanService: Server;
  let svcPort: number;
  let lanSvcPort: number;
  /** The host's services a guest must not reach: `10.0.2.2:<port>` is the host's loopback under QEMU user networking. */
  let targets: Record<string, string>;
  /** What the rogue's artifact route saw: the digests asked for, and whether the receiver cut a stream. */
  const rogueLog: { asked: string[]; cut: boolean } = { asked: [], cut: false };

  beforeAll(async () => {
    ensureImages('linux-service');
    // The same image, its manifest asking for the LAN: same artifacts, so the same digests.
    const lanImages = newDir('workloads-security-images-');
    cpSync(join(IMAGES, 'linux-service'), join(lanImages, 'linux-service-lan'), { recursive: true });
    const lanManifest = join(lanImages, 'linux-service-lan', 'manifest.json');
    writeFileSync(lanManifest, JSON.stringify({ ...builtManifest('linux-service'), name: 'linux-service-lan', network: 'lan' }));

    host = await startTestAgent();
    lanService = await listenAnywhere();
    targets = {
      api: `10.0.2.2:${new URL(host.apiUrl).port}`,
      mqtt: `10.0.2.2:${new URL(host.mqttUrl).port}`,
      ...(lanAddress ? { lan: `${lanAddress}:${(lanService.address() as AddressInfo).port}` } : {}),
    };

    [edge, meta, rogue] = [await side('edge'), await side('meta'), await side('rogue')];
    [svcPort, lanSvcPort] = [await freePort(), await freePort()];
    await startSide(edge, {
      images: [IMAGES, lanImages],
      peers: [meta.peer],
      workloads: [
        { name: 'svc', image: 'linux-service', ports: [{ guest: 8080, host: svcPort }] },
        { name: 'lan-svc', image: 'linux-service-lan', network: 'lan', ports: [{ guest: 8080, host: lanSvcPort }] },
        { name: 'config-only', image: 'linux-service', network: 'lan' },
        { name: 'image-only', image: 'linux-service-lan' },
        { name: 'roamer', image: 'linux-service-lan', network: 'lan' },
        { name: 'safety', image: 'unikernel-ticker' },
        { name: 'mover', image: 'unikernel-ticker' },
      ],
    });
    await startSide(meta, {
      // Every peer here connects from 127.0.0.1: a budget for the whole describe (the flood has its own below).
      listen: { host: '127.0.0.1', port: Number(new URL(meta.peer.url).port), handshakes: { burst: 200, perSecond: 50 } },
      images: [IMAGES],
      peers: [edge.peer, rogue.peer],
      maxArtifactBytes: 8 * MiB,
      transferTimeoutMs: 2000,
      peerMemoryMiB: 160,
      peerCpus: 1,
      workloads: [{ name: 'safety', image: 'unikernel-ticker', placement: 'local' }],
    });
    rogueServer = new PeerServer({
      identity: rogue.identity,
      peers: [meta.peer],
      listen: { ...v.parse(workloadsSection, {}).listen, host: '127.0.0.1', port: Number(new URL(rogue.peer.url).port) },
      log,
      routes: [{ method: 'GET', path: '/v1/artifacts/:sha256', handle: ({ params }) => rogueArtifact(params.sha256!) }],
      stream: (_request, socket) => socket.destroy(),
    });
    await rogueServer.start();
  }, 120_000);

  afterAll(async () => {
    await rogueServer?.stop();
    for (const s of [edge, meta]) {
      await s?.module?.stop();
      await s?.routes?.close();
    }
    await host?.stop();
    lanService?.close();
  });

  /** Artifacts of the rogue's offers, whatever their digest: one starting with `5` trickles 1 KiB every 100 ms, any other never ends. */
  function rogueArtifact(sha256: string): Streamed {
    rogueLog.asked.push(sha256);
    const stream = new PassThrough();
    const chunk = sha256.startsWith('5') ? randomBytes(KiB) : randomBytes(64 * KiB);
    const timer = setInterval(() => {
      if (stream.writableLength > MiB) return;
      stream.write(chunk);
    }, sha256.startsWith('5') ? 100 : 2);
    stream.on('close', () => {
      clearInterval(timer);
      rogueLog.cut = true;
    });
    return new Streamed(stream);
  }

  /** An offer to meta as `from` would make it (with `certificate` for its stream, its own by default), answered or refused. */
  function offer(from: Side, definition: Record<string, unknown>, manifest: Record<string, unknown>, certificate = from.identity.certPem): Promise<{ id: string; artifactsFetched: number; port: number }> {
    return new PeerClient(from.identity, log).request(meta.peer, 'POST', '/v1/migrations', { definition, manifest, certificate }, 20_000);
  }

  /** The edge, the peer that offered migration `id`, gives it up. */
  const abortAsEdge = (id: string) => new PeerClient(edge.identity, log).request(meta.peer, 'POST', `/v1/migrations/${id}/abort`, {});

  /** Meta's guest `name` still waits for its stream (a failed incoming migration would have ended its QEMU); the edge then aborts, and nothing of it stays. */
  async function stillWaitingThenAborted(name: string, id: string): Promise<void> {
    await sleep(300);
    expect(qemuOf(meta, name)).toContain('-incoming defer');
    await abortAsEdge(id);
    await waitFor('the waiting guest gone', () => qemuUnder(join(meta.run, `${name}.qmp`)).length === 0, { timeoutMs: 10_000, intervalMs: 100 });
  }

  /** What `socket` received before it closed (or `ms` passed), and whether it closed. */
  function drain(socket: Socket, ms = 5000): Promise<{ bytes: number; closed: boolean }> {
    let bytes = 0;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ bytes, closed: false }), ms);
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
      socket.on('error', () => undefined);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve({ bytes, closed: true });
      });
    });
  }

  async function refusal(promise: Promise<unknown>): Promise<PeerError> {
    const error = await promise.then(
      () => new Error('accepted'),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PeerError);
    return error as PeerError;
  }

  it('a guest reaches neither the host’s API and broker (10.0.2.2) nor the LAN by default; its forwarded port still answers', async () => {
    expect((await call<WorkloadView>(edge, 'POST', '', { name: 'svc' })).status).toBe(200);
    expect(netdevOf(edge, 'svc')).toBe(`user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${svcPort}-:8080`);
    await waitReady(edge, 'svc');
    expect((await fetch(`http://127.0.0.1:${svcPort}/`)).status).toBe(200);
    for (const [what, target] of Object.entries(targets)) {
      expect(await probe(svcPort, target), `${what} at ${target}`).toMatch(/^unreachable: nc: can't connect to remote host \([\d.]+\): Connection refused$/);
    }
    expect((await workload(edge, 'svc')).history.find((h) => h.event === 'started')?.detail).toMatchObject({ network: 'restricted' });
    // Its console and directory are for the agent's user only.
    expect(statSync(edge.run).mode & 0o777).toBe(0o700);
    expect(statSync(join(edge.run, 'svc.console')).mode & 0o777).toBe(0o600);
  }, 90_000);

  it('only an image that asks for the LAN, run by a workload the config lets have it, reaches the host and the LAN', async () => {
    for (const name of ['lan-svc', 'config-only', 'image-only']) expect((await call(edge, 'POST', '', { name })).status).toBe(200);
    expect(netdevOf(edge, 'lan-svc')).toBe(`user,id=n0,restrict=off,hostfwd=tcp:127.0.0.1:${lanSvcPort}-:8080`);
    expect(netdevOf(edge, 'config-only')).toBe('user,id=n0,restrict=on');
    expect(netdevOf(edge, 'image-only')).toBe('user,id=n0,restrict=on');
    for (const name of ['config-only', 'image-only']) await call(edge, 'DELETE', `/${name}`);
    await waitReady(edge, 'lan-svc');
    // The same probes from a guest allowed the LAN: what the restricted one was refused was there to reach.
    for (const [what, target] of Object.entries(targets)) expect(await probe(lanSvcPort, target), `${what} at ${target}`).toBe('reachable');
    for (const name of ['svc', 'lan-svc']) await call(edge, 'DELETE', `/${name}`);
  }, 90_000);

  it('a workload migrated in from a peer runs restricted, even one its source let have the LAN; back home it has the LAN again', async () => {
    await call(edge, 'POST', '', { name: 'roamer' });
    expect(netdevOf(edge, 'roamer')).toBe('user,id=n0,restrict=off');
    const moved = await call<MigrationResult>(edge, 'POST', '/roamer/migrate', { peer: 'meta' });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(await workload(meta, 'edge.roamer')).toMatchObject({ state: 'running', origin: 'peer:edge', definition: { name: 'edge.roamer', network: 'restricted' } });
    expect(netdevOf(meta, 'edge.roamer')).toBe('user,id=n0,restrict=on');

    expect((await call(edge, 'POST', '/roamer/return')).status).toBe(200);
    expect(await workload(edge, 'roamer')).toMatchObject({ state: 'running', origin: 'local', definition: { network: 'lan' } });
    expect(netdevOf(edge, 'roamer')).toBe('user,id=n0,restrict=off');
    expect((await listed(meta)).map((w) => w.name)).not.toContain('edge.roamer');
    await call(edge, 'DELETE', '/roamer');
  }, 90_000);

  it('a peer’s workload is kept under its name: a local definition of the same name (placement: local) stays, and it goes back only to its peer', async () => {
    await call(edge, 'POST', '', { name: 'safety' });
    expect((await call(edge, 'POST', '/safety/migrate', { peer: 'meta' })).status).toBe(200);
    expect(await workload(meta, 'edge.safety')).toMatchObject({ state: 'running', origin: 'peer:edge', definition: { placement: 'any' } });
    expect(await workload(meta, 'safety')).toMatchObject({ state: 'stopped', origin: 'local', definition: { placement: 'local' } });
    // Both run side by side, each with its own files.
    expect(await (await call<WorkloadView>(meta, 'POST', '', { name: 'safety' })).body).toMatchObject({ state: 'running', origin: 'local', pid: expect.any(Number) });

    const onward = await call<ErrorBody>(meta, 'POST', '/edge.safety/migrate', { peer: 'rogue' });
    expect(onward).toEqual({ status: 409, body: { code: 409, reason: 'workload edge.safety came from edge: it can only go back there' } });
    // A peer cannot ask for another's workload, nor for this agent's own.
    const asRogue = new PeerClient(rogue.identity, log);
    expect((await refusal(asRogue.request(meta.peer, 'POST', '/v1/workloads/safety/return', {}))).message).toBe('peer meta answered 403 to POST /v1/workloads/safety/return: workload safety did not come from rogue');

    expect((await call(edge, 'POST', '/safety/return')).status).toBe(200);
    expect(await workload(edge, 'safety')).toMatchObject({ state: 'running', origin: 'local' });
    expect((await listed(meta)).map((w) => w.name)).not.toContain('edge.safety');
    expect(await workload(meta, 'safety')).toMatchObject({ state: 'running', origin: 'local', definition: { placement: 'local' } });
    await call(edge, 'DELETE', '/safety');
    await call(meta, 'DELETE', '/safety');
  }, 90_000);

  it('a migration answers only its source, and a confirmation asked again as the first: the source whose answer was lost hears the workload runs here, an abort then 409', async () => {
    await call(edge, 'POST', '', { name: 'mover' });
    expect((await call(edge, 'POST', '/mover/migrate', { peer: 'meta' })).status).toBe(200);
    const arrived = (await workload(meta, 'edge.mover')).history.find((h) => h.event === 'migrated in');
    const id = String(arrived?.detail?.migration);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const source = new PeerClient(edge.identity, log);
    expect(await source.request(meta.peer, 'POST', `/v1/migrations/${id}/confirm`, {})).toEqual({ status: 'running' });
    expect((await refusal(source.request(meta.peer, 'POST', `/v1/migrations/${id}/abort`, {}))).message).toBe(
      `peer meta answered 409 to POST /v1/migrations/${id}/abort: migration ${id} was confirmed: the workload runs here`,
    );
    // Another peer of meta's can neither confirm nor abort it.
    const asRogue = new PeerClient(rogue.identity, log);
    expect((await refusal(asRogue.request(meta.peer, 'POST', `/v1/migrations/${id}/confirm`, {}))).status).toBe(404);
    await asRogue.request(meta.peer, 'POST', `/v1/migrations/${id}/abort`, {});
    expect(await workload(meta, 'edge.mover')).toMatchObject({ state: 'running' });

    expect((await call(edge, 'POST', '/mover/return')).status).toBe(200);
    await call(edge, 'DELETE', '/mover');
  }, 90_000);

  it('an offer’s waiting guest answers only the peer that offered it: another peer cannot abort it or take its lease', async () => {
    const ticker = builtManifest('unikernel-ticker');
    const accepted = await offer(edge, { name: 'awaited', image: ticker.name }, { ...ticker });
    const asRogue = new PeerClient(rogue.identity, log);
    await asRogue.request(meta.peer, 'POST', `/v1/migrations/${accepted.id}/abort`, {});
    const lease = await asRogue.stream(meta.peer, `/v1/migrations/${accepted.id}/stream`).catch((error: Error) => error);
    if (!(lease instanceof Error)) await new Promise((resolve) => lease.once('close', resolve));
    await stillWaitingThenAborted('edge.awaited', accepted.id);
  }, 60_000);

  it('a peer’s workload gets at most workloads.peerCpus CPUs and, with the peers’ others here and arriving, workloads.peerMemoryMiB of memory: 422 before anything starts', async () => {
    const ticker = builtManifest('unikernel-ticker');
    const hungry = await refusal(offer(edge, { name: 'hungry', image: ticker.name, memoryMiB: 256 }, { ...ticker }));
    expect([hungry.status, hungry.message]).toEqual([422, "peer meta answered 422 to POST /v1/migrations: workload edge.hungry asks for 256 MiB; peers' workloads here have 0 of at most 160 MiB (workloads.peerMemoryMiB)"]);
    const wide = await refusal(offer(edge, { name: 'wide', image: ticker.name, cpus: 2 }, { ...ticker }));
    expect([wide.status, wide.message]).toEqual([422, "peer meta answered 422 to POST /v1/migrations: workload edge.wide asks for 2 CPUs; a peer's workload gets at most 1 here (workloads.peerCpus)"]);
    expect(qemuUnder(join(meta.run, 'edge.hungry.qmp'))).toEqual([]);

    // A guest waiting for its stream counts: 128 MiB arriving leaves room for 32, not 48.
    const linux = builtManifest('linux-service');
    const first = await offer(edge, { name: 'first', image: linux.name }, { ...linux });
    const second = await refusal(offer(edge, { name: 'second', image: ticker.name, memoryMiB: 48 }, { ...ticker }));
    expect(second.message).toContain("peers' workloads here have 128 of at most 160 MiB");
    await abortAsEdge(first.id);
    await abortAsEdge((await offer(edge, { name: 'second', image: ticker.name, memoryMiB: 48 }, { ...ticker })).id);
  }, 60_000);

  it('the migration stream takes only the source’s pinned certificate: another in the offer is refused 403, and at the waiting guest’s port a LAN host is cut off and the guest waits on', async () => {
    const ticker = builtManifest('unikernel-ticker');
    const swapped = await refusal(offer(edge, { name: 'swapped', image: ticker.name }, { ...ticker }, rogue.identity.certPem));
    expect(swapped.status).toBe(403);
    expect(swapped.message).toBe(`peer meta answered 403 to POST /v1/migrations: peer edge sent certificate ${rogue.identity.fingerprint} for the migration stream, not its pinned ${edge.identity.fingerprint}`);
    expect(qemuUnder(join(meta.run, 'edge.swapped.qmp'))).toEqual([]);

    const accepted = await offer(edge, { name: 'waiting', image: ticker.name }, { ...ticker });
    expect(accepted.port).toBeGreaterThan(0);
    // Another peer of meta's, with its own pinned certificate: not the one this stream trusts.
    const impostor = tlsConnect({ host: '127.0.0.1', port: accepted.port, cert: rogue.identity.certPem, key: rogue.identity.keyPem, rejectUnauthorized: false });
    impostor.on('secureConnect', () => impostor.write(randomBytes(64 * KiB)));
    expect(await drain(impostor)).toEqual({ bytes: 0, closed: true });
    // No TLS at all: bytes that would be a migration stream.
    const plain = tcpConnect(accepted.port, '127.0.0.1', () => plain.write(Buffer.concat([Buffer.from('QEVM'), randomBytes(64 * KiB)])));
    expect((await drain(plain)).closed).toBe(true);
    await stillWaitingThenAborted('edge.waiting', accepted.id);
  }, 60_000);

  it('a peer’s image named like a local one does not replace it', async () => {
    const local = builtManifest('unikernel-ticker');
    const accepted = await offer(edge, { name: 'impostor', image: local.name }, { ...local, version: '6.6.6', memoryMiB: 32 });
    expect(accepted.artifactsFetched).toBe(0);
    expect(qemuOf(meta, 'edge.impostor')).toContain(' -m 32 ');
    await abortAsEdge(accepted.id);

    await call(meta, 'POST', '', { name: 'safety' });
    expect(qemuOf(meta, 'safety')).toContain(' -m 16 ');
    await call(meta, 'DELETE', '/safety');
  }, 30_000);

  it('an offer with a field that would reach QEMU’s option parser is refused 400, the field named, before anything starts', async () => {
    const good = builtManifest('linux-service');
    const definition = { name: 'other', image: good.name };
    const refused = async (d: Record<string, unknown>, m: Record<string, unknown>) => {
      const error = await refusal(offer(edge, d, m));
      expect(error.status).toBe(400);
      return error.message.replace('peer meta answered 400 to POST /v1/migrations: ', '');
    };
    const machine = 'virt,accel=tcg -device virtio-9p-pci,fsdev=host';
    expect(await refused(definition, { ...good, aarch64: { ...good.aarch64, machine } })).toBe(
      "manifest.aarch64.machine: must be a QEMU machine name: 1-64 of a-z, 0-9, '.', '_', '-' (no ',', '=' or space)",
    );
    expect(await refused(definition, { ...good, aarch64: { ...good.aarch64, cpu: 'host,pmu=off' } })).toMatch(/^manifest\.aarch64\.cpu: must be a QEMU CPU model name/);
    expect(await refused(definition, { ...good, aarch64: { ...good.aarch64, accel: 'kvm -S' } })).toMatch(/^manifest\.aarch64\.accel: /);
    expect(await refused(definition, { ...good, cmdline: 'console=ttyS0\ninit=/bin/sh' })).toBe('manifest.cmdline: must be at most 1024 printable ASCII characters');
    expect(await refused({ ...definition, name: 'edge.safety' }, { ...good })).toBe('definition.name: must be lower-case letters, digits and dashes');
    expect(qemuUnder(join(meta.run, 'edge.other'))).toEqual([]);

    // And QEMU's command line is never built with one, wherever the manifest came from.
    const manifest = { ...good, architecture: 'aarch64' as const, aarch64: { ...good.aarch64!, machine } };
    expect(() => qemuArgs({ id: 'other', runDir: meta.run, manifest, artifacts: { kernel: '/k', initrd: '/i' }, accel: 'kvm' })).toThrow(
      `cannot run other (linux-service): aarch64.machine ${JSON.stringify(machine)} is not a QEMU model name`,
    );
  });

  it('a peer’s artifact is cut off past its declared size, refused over maxArtifactBytes before any download, and cut at the transfer deadline', async () => {
    const base = builtManifest('unikernel-ticker');
    const withKernel = (sha256: string, size: number) => ({ ...base, name: 'rogue-kernel', artifacts: [{ role: 'kernel', file: 'k.elf', sha256, size }] });
    const definition = { name: 'grab', image: 'rogue-kernel' };
    /** A digest of nothing the rogue has; its first digit picks how the rogue serves it. */
    const digestStarting = (digit: string) => `${digit}${randomBytes(32).toString('hex').slice(1)}`;
    const store = join(meta.data, 'workloads', 'images');
    const stored = () => new Set(readdirSync(store));
    const before = stored();

    const endless = digestStarting('e');
    const declared = 256 * KiB;
    const tooLong = await refusal(offer(rogue, definition, withKernel(endless, declared)));
    expect(tooLong.status).toBe(422);
    expect(tooLong.message).toMatch(/^peer meta answered 422 to POST \/v1\/migrations: artifact kernel \(k\.elf\) from rogue refused: more than the 262144 bytes declared: cut off at \d+$/);
    const cutAt = Number(/cut off at (\d+)$/.exec(tooLong.message)![1]);
    // Cut at the first chunk past the size, not once the peer stopped sending.
    expect(cutAt - declared).toBeLessThanOrEqual(64 * KiB);
    await waitFor('the rogue’s stream cut', () => rogueLog.cut, { timeoutMs: 2000, intervalMs: 20 });

    rogueLog.asked.length = 0;
    const huge = await refusal(offer(rogue, definition, withKernel(digestStarting('a'), 8 * MiB + 1)));
    expect(huge.status).toBe(413);
    expect(huge.message).toBe(
      'peer meta answered 413 to POST /v1/migrations: artifact kernel (k.elf) is 8388609 bytes, more than the 8388608 this agent takes from a peer (workloads.maxArtifactBytes)',
    );
    expect(rogueLog.asked).toEqual([]);

    const started = performance.now();
    const slow = await refusal(offer(rogue, definition, withKernel(digestStarting('5'), MiB)));
    expect(slow.status).toBe(422);
    expect(slow.message).toMatch(/from rogue refused: download of \/v1\/artifacts\/5[0-9a-f]+ from peer rogue broke off after \d+ of unknown bytes: the transfer from rogue took longer than 2000 ms \(workloads\.transferTimeoutMs\)$/);
    expect(performance.now() - started).toBeLessThan(5000);

    expect(stored()).toEqual(before);
    expect(qemuUnder(join(meta.run, 'rogue.grab'))).toEqual([]);
  }, 30_000);
});

describe('the peer endpoint under a handshake flood', () => {
  it('throttles one address before the handshake while a pinned peer gets through, and logs refusals once per interval with their count', async () => {
    const lines: Array<{ remote?: string; refusals?: number; msg: string }> = [];
    const captured = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const [server, friend] = [loadOrCreateIdentity(newDir('flood-server-'), 'server'), loadOrCreateIdentity(newDir('flood-friend-'), 'friend')];
    const listen = { host: '127.0.0.1', port: 0, handshakes: { burst: 5, perSecond: 2 }, refusalLogIntervalMs: 1000 };
    const routes: PeerRoute[] = [{ method: 'GET', path: '/hello', handle: ({ context }) => ({ hello: context.name }) }];
    const endpoint = new PeerServer({ identity: server, peers: [{ name: 'friend', url: 'https://127.0.0.1:1', fingerprint: friend.fingerprint }], listen, log: captured, routes, stream: (_r, socket) => socket.destroy() });
    await endpoint.start();
    try {
      /** One connection from 127.0.0.2 with no client certificate: its status, or the error of a connection cut. */
      const stranger = () =>
        new Promise<number | string>((resolve) => {
          const req = httpsRequest({ host: '127.0.0.1', port: endpoint.port, path: '/hello', localAddress: '127.0.0.2', rejectUnauthorized: false, agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          req.on('error', (error) => resolve(error.message));
          req.end();
        });
      const flood: Array<number | string> = [];
      const started = performance.now();
      for (let i = 0; i < 40; i++) flood.push(await stranger());
      const seconds = (performance.now() - started) / 1000;
      const answered = flood.filter((r) => typeof r === 'number');
      expect(answered.every((status) => status === 403)).toBe(true);
      // The burst, and what the bucket refilled meanwhile.
      expect(answered.length).toBeGreaterThanOrEqual(listen.handshakes.burst);
      expect(answered.length).toBeLessThanOrEqual(listen.handshakes.burst + Math.ceil(seconds * listen.handshakes.perSecond));
      expect(flood.filter((r) => typeof r === 'string').length).toBe(40 - answered.length);

      const pinned = { name: 'server', url: `https://127.0.0.1:${endpoint.port}`, fingerprint: server.fingerprint };
      expect(await new PeerClient(friend, log).request(pinned, 'GET', '/hello')).toEqual({ hello: 'friend' });

      const fromStranger = () => lines.filter((line) => line.remote === '127.0.0.2');
      expect(fromStranger()).toHaveLength(1);
      expect(fromStranger()[0]).toMatchObject({ refusals: 1, msg: 'refused a peer connection: a client certificate is required: only configured peers are served' });
      await sleep(1100);
      expect(await stranger()).toBe(403);
      expect(fromStranger()).toHaveLength(2);
      expect(fromStranger()[1]).toMatchObject({ refusals: 40, msg: 'refused a peer connection: a client certificate is required: only configured peers are served' });
      expect(lines.filter((line) => line.remote === '127.0.0.1')).toEqual([]);
    } finally {
      await endpoint.stop();
    }
  });
});

describe('guest files', () => {
  it('snapshots (guest RAM) and consoles are 0600, their directory 0700, whatever modes were there before', async () => {
    const run = join(newDir('workloads-files-'), 'workloads');
    mkdirSync(run, { mode: 0o755 });
    chmodSync(run, 0o755);
    writeFileSync(join(run, 'ticker.console'), 'an older console\n', { mode: 0o644 });
    const manifest = builtManifest('unikernel-ticker');
    const artifacts = { kernel: join(IMAGES, 'unikernel-ticker', manifest.artifacts[0]!.file) };
    const guest = await new QemuRuntime({ runDir: run, pidDir: join(run, 'pids'), consoleMaxBytes: 1024 ** 2 }, log).start({ name: 'ticker', manifest, artifacts, hostPorts: [], network: 'restricted' });
    try {
      expect(statSync(run).mode & 0o777).toBe(0o700);
      expect(statSync(join(run, 'ticker.console')).mode & 0o777).toBe(0o600);
      const snapshot = join(run, 'ticker.snapshot');
      expect((await guest.snapshot(snapshot)).status).toBe('completed');
      expect(statSync(snapshot).mode & 0o777).toBe(0o600);
    } finally {
      await guest.quit();
    }
  }, 30_000);
});
