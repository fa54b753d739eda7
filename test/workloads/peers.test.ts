/**
 * The authenticated channel between two agents (src/workloads/peers.ts) with identities from
 * src/workloads/identity.ts: pinned mutual TLS, JSON requests, downloads with progress, the raw
 * stream tunnel and its throughput, and the failures: unknown peers, wrong pins, a peer that goes away.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { createReadStream, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough, Readable, type Duplex } from 'node:stream';
import * as v from 'valibot';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Streamed, type Method, type RouteRequest } from '../../src/http/router.js';
import { createLogger } from '../../src/log.js';
import { wifiConfig } from '../../src/wifi/config.js';
import { TrafficPaths } from '../../src/wifi/paths.js';
import { workloadsSection } from '../../src/workloads/config.js';
import { fingerprintOf, loadOrCreateIdentity, type PeerIdentity } from '../../src/workloads/identity.js';
import { PeerClient, PeerError, PeerServer, type PeerConfig, type PeerRoute, type PeerStreamHandler } from '../../src/workloads/peers.js';
import { tempDir } from '../support/agent.js';
import { waitFor } from '../support/wait.js';

const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const MiB = 1 << 20;
const dirs: string[] = [];

function newDir(): string {
  const dir = tempDir('workload-peers-test-');
  dirs.push(dir);
  return dir;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function rejection(promise: Promise<unknown>): Promise<PeerError> {
  const error = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(PeerError);
  return error as PeerError;
}

/** Everything a readable stream yields, or its error. */
async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Writes `data` to the tunnel and reads back as many bytes. */
async function roundTrip(tunnel: Duplex, data: Buffer): Promise<Buffer> {
  const received = collect(tunnel);
  Readable.from(chunksOf(data, 256 * 1024)).pipe(tunnel);
  return received;
}

function* chunksOf(data: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

let a: PeerIdentity;
let b: PeerIdentity;
let server: PeerIdentity;
/** What the server's handlers saw. */
const seen: string[] = [];
let artifact: string;

/** A route that notes who asked for what in `seen`. */
function route(method: Method, path: string, handle: (request: RouteRequest<PeerConfig>) => unknown): PeerRoute {
  return {
    method,
    path,
    handle: (request) => {
      seen.push(`${request.context.name} ${method} ${path}`);
      return handle(request);
    },
  };
}

/**
 * JSON echo at /echo, a checked body at /count, the artifact at /artifact, an endless download at
 * /endless, 1 MiB then silence at /stall, a failure at /broken, no answer ever at /hang; streams: /echo echoes.
 */
const routes: PeerRoute[] = [
  ...(['GET', 'POST'] as const).map((method) => route(method, '/echo', async ({ context: peer, body }) => ({ from: peer.name, method, body: await body(v.unknown()) }))),
  route('POST', '/count', async ({ body }) => body(v.object({ count: v.number() }))),
  route('GET', '/artifact', () => new Streamed(createReadStream(artifact), statSync(artifact).size)),
  route('GET', '/endless', () => {
    const endless = new PassThrough();
    const timer = setInterval(() => endless.write(randomBytes(64 * 1024)), 5);
    endless.on('close', () => clearInterval(timer));
    return new Streamed(endless);
  }),
  route('GET', '/stall', () => {
    const stalled = new PassThrough();
    stalled.write(randomBytes(MiB));
    return new Streamed(stalled);
  }),
  route('POST', '/broken', () => {
    throw new Error('the handler failed on purpose');
  }),
  route('GET', '/hang', () => new Promise(() => undefined)),
];

const echoStream: PeerStreamHandler = ({ peer, path }, socket) => {
  seen.push(`${peer.name} stream ${path}`);
  if (path === '/source') return void socket.end((socket as Socket).remoteAddress);
  if (path === '/echo') socket.pipe(socket);
  else socket.destroy();
};

let peerServer: PeerServer;
let serverPeer: PeerConfig;
let clientA: PeerClient;
let clientB: PeerClient;

async function startServer(): Promise<{ server: PeerServer; peer: PeerConfig }> {
  const peers = [{ name: 'a', url: 'https://127.0.0.1:1', fingerprint: a.fingerprint }];
  const listen = { ...v.parse(workloadsSection, {}).listen, host: '127.0.0.1', port: 0 };
  const started = new PeerServer({ identity: server, peers, listen, log, routes, stream: echoStream });
  await started.start();
  return { server: started, peer: { name: 'meta-edge', url: `https://127.0.0.1:${started.port}`, fingerprint: server.fingerprint } };
}

beforeAll(async () => {
  a = loadOrCreateIdentity(newDir(), 'agent-a');
  b = loadOrCreateIdentity(newDir(), 'agent-b');
  server = loadOrCreateIdentity(newDir(), 'meta-edge');
  artifact = join(newDir(), 'artifact.bin');
  writeFileSync(artifact, randomBytes(8 * MiB + 123));
  ({ server: peerServer, peer: serverPeer } = await startServer());
  clientA = new PeerClient(a, log);
  clientB = new PeerClient(b, log);
});

afterEach(() => {
  seen.length = 0;
});

afterAll(async () => {
  await peerServer.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('identity', () => {
  it('is created once with a private key file and reused on the next load', () => {
    const dir = newDir();
    const first = loadOrCreateIdentity(dir, 'node-1');
    expect(statSync(join(dir, 'identity.key')).mode & 0o777).toBe(0o600);
    const second = loadOrCreateIdentity(dir, 'node-1');
    expect(second).toEqual(first);
    expect(first.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprintOf(first.certPem)).toBe(first.fingerprint);
  });

  it('is a self-signed X.509 v3 certificate for CN=<node name> that X509Certificate and openssl read', () => {
    const dir = newDir();
    const identity = loadOrCreateIdentity(dir, 'node-1');
    const cert = new X509Certificate(identity.certPem);
    expect(cert.subject).toBe('CN=node-1');
    expect(cert.issuer).toBe('CN=node-1');
    expect(cert.ca).toBe(false);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 24 * 3600_000);
    expect(years).toBeCloseTo(10, 1);
    expect(fingerprintOf(cert.raw)).toBe(identity.fingerprint);

    const certPath = join(dir, 'identity.crt');
    const text = execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toContain('Version: 3 (0x2)');
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    const fingerprint = execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    expect(fingerprint.trim().split('=')[1]!.replaceAll(':', '').toLowerCase()).toBe(identity.fingerprint);
    expect(execFileSync('openssl', ['verify', '-CAfile', certPath, certPath], { encoding: 'utf8' })).toContain(': OK');
  });

  it('completes a certificate for a key left alone by a crash, and refuses a certificate without its key', () => {
    const dir = newDir();
    const first = loadOrCreateIdentity(dir, 'node-1');
    rmSync(join(dir, 'identity.crt'));
    const completed = loadOrCreateIdentity(dir, 'node-1');
    expect(completed.keyPem).toBe(first.keyPem);
    expect(completed.fingerprint).not.toBe(first.fingerprint);
    expect(new X509Certificate(completed.certPem).checkPrivateKey(createPrivateKey(first.keyPem))).toBe(true);

    rmSync(join(dir, 'identity.key'));
    expect(() => loadOrCreateIdentity(dir, 'node-1')).toThrow(/identity\.crt exists but its key .*identity\.key is missing/);
    expect(readFileSync(join(dir, 'identity.crt'), 'utf8')).toBe(completed.certPem);
  });

  it('refuses a corrupt key or a certificate of another key, changing neither', () => {
    const dir = newDir();
    loadOrCreateIdentity(dir, 'node-1');
    writeFileSync(join(dir, 'identity.crt'), b.certPem);
    expect(() => loadOrCreateIdentity(dir, 'node-1')).toThrow(/identity\.crt does not belong to the key/);
    writeFileSync(join(dir, 'identity.key'), 'garbage');
    expect(() => loadOrCreateIdentity(dir, 'node-1')).toThrow(/identity\.key is not a private key/);
    expect(readFileSync(join(dir, 'identity.key'), 'utf8')).toBe('garbage');
  });
});

describe('a configured peer', () => {
  it('exchanges JSON, identified by its certificate', async () => {
    const answer = await clientA.request<{ from: string; method: string; body: unknown }>(serverPeer, 'POST', '/echo', { workload: 'counter', digests: ['ab'] });
    expect(answer).toEqual({ from: 'a', method: 'POST', body: { workload: 'counter', digests: ['ab'] } });
    expect(await clientA.request(serverPeer, 'GET', '/echo')).toEqual({ from: 'a', method: 'GET' });
  });

  it('gets the server’s errors ({code, reason}) as PeerErrors with the status and the reason', async () => {
    const missing = await rejection(clientA.request(serverPeer, 'GET', '/nothing'));
    expect(missing.status).toBe(404);
    expect(missing.message).toBe('peer meta-edge answered 404 to GET /nothing: no route for GET /nothing');
    const refused = await rejection(clientA.request(serverPeer, 'POST', '/count', { count: 'three' }));
    expect(refused.status).toBe(400);
    expect(refused.message).toBe('peer meta-edge answered 400 to POST /count: count: expected number, received "three"');
    const broken = await rejection(clientA.request(serverPeer, 'POST', '/broken', {}));
    expect(broken.status).toBe(500);
    expect(broken.message).toBe('peer meta-edge answered 500 to POST /broken: the handler failed on purpose');
  });

  it('downloads a file with progress up to its size', async () => {
    const progress: [number, number | undefined][] = [];
    const stream = await clientA.download(serverPeer, '/artifact', { onProgress: (bytes, total) => progress.push([bytes, total]) });
    const data = await collect(stream);
    expect(sha256(data)).toBe(sha256(readFileSync(artifact)));
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toEqual([data.length, data.length]);
    expect(progress.every(([bytes], i) => i === 0 || bytes > progress[i - 1]![0])).toBe(true);
  });

  it('tunnels a raw byte stream both ways', async () => {
    const tunnel = await clientA.stream(serverPeer, '/echo');
    expect(seen).toEqual(['a stream /echo']);
    const data = Buffer.from('hello through the tunnel');
    expect((await roundTrip(tunnel, data)).toString()).toBe(data.toString());
  });

  it('leaves from the address its traffic is placed on (wifi.sensitive), and waits for one while there is none', async () => {
    const paths = new TrafficPaths(wifiConfig({ enabled: true }));
    const placed = new PeerClient(a, log, paths);
    const tooSoon = await placed.request(serverPeer, 'GET', '/echo', undefined, 200).catch((error: unknown) => error);
    expect(tooSoon).toBeInstanceOf(PeerError);
    expect((tooSoon as Error).message).toBe('cannot reach peer meta-edge: no path for peers traffic after 200 ms: WiFi is starting');
    const answered = placed.request(serverPeer, 'GET', '/echo');
    paths.update({ candidates: [{ identity: 'wid1', address: '127.0.0.3', trusted: true, score: 1 }] });
    expect(await answered).toEqual({ from: 'a', method: 'GET' });
    expect((await collect(await placed.stream(serverPeer, '/source'))).toString()).toBe('127.0.0.3');
  });

  it('tunnels 64 MiB both ways intact', async () => {
    const data = randomBytes(64 * MiB);
    const tunnel = await clientA.stream(serverPeer, '/echo');
    const started = performance.now();
    const echoed = await roundTrip(tunnel, data);
    const seconds = (performance.now() - started) / 1000;
    expect(echoed.length).toBe(data.length);
    expect(sha256(echoed)).toBe(sha256(data));
    console.log(`peer tunnel: 64 MiB there and back in ${(seconds * 1000).toFixed(0)} ms: ${(64 / seconds).toFixed(0)} MB/s each way, concurrently`);
  });
});

describe('refused', () => {
  it('an unknown client gets 403 and a PeerError for requests, downloads and streams; no handler runs', async () => {
    const request = await rejection(clientB.request(serverPeer, 'POST', '/echo', { x: 1 }));
    expect(request.status).toBe(403);
    expect(request.message).toBe(`peer meta-edge answered 403 to POST /echo: certificate ${b.fingerprint} is not one of this agent's peers`);
    expect((await rejection(clientB.download(serverPeer, '/artifact'))).status).toBe(403);
    const stream = await rejection(clientB.stream(serverPeer, '/echo'));
    expect(stream.status).toBe(403);
    expect(stream.message).toContain(`certificate ${b.fingerprint} is not one of this agent's peers`);
    expect(seen).toEqual([]);
  });

  it('a client without a certificate gets 403', async () => {
    const answer = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(`${serverPeer.url}/echo`, { rejectUnauthorized: false }, (res) => {
        collect(res).then((body) => resolve({ status: res.statusCode, body: body.toString() }), reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer).toEqual({ status: 403, body: JSON.stringify({ code: 403, reason: 'a client certificate is required: only configured peers are served' }) });
    expect(seen).toEqual([]);
  });

  it('a server presenting another certificate than the pinned one: nothing is sent', async () => {
    const impostor = { ...serverPeer, fingerprint: b.fingerprint };
    const expected = `peer meta-edge presented certificate ${server.fingerprint}, expected ${b.fingerprint}`;
    expect((await rejection(clientA.request(impostor, 'POST', '/echo', { secret: 1 }))).message).toBe(expected);
    expect((await rejection(clientA.download(impostor, '/artifact'))).message).toBe(expected);
    expect((await rejection(clientA.stream(impostor, '/echo'))).message).toBe(expected);
    expect(seen).toEqual([]);
  });

  it('an unreachable peer or a silent one: a PeerError in time', async () => {
    const { server: stopped, peer } = await startServer();
    await stopped.stop();
    expect((await rejection(clientA.request(peer, 'GET', '/echo'))).message).toMatch(/^peer meta-edge at https:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/);

    const silent = await listenSilently();
    const silentPeer = { ...serverPeer, url: `https://127.0.0.1:${silent.port}` };
    const started = performance.now();
    expect((await rejection(clientA.request(silentPeer, 'GET', '/echo', undefined, 300))).message).toMatch(/^GET \/echo at peer meta-edge .* timed out after 300 ms$/);
    expect((await rejection(clientA.download(silentPeer, '/artifact', { idleTimeoutMs: 300 }))).message).toMatch(/sent nothing for 300 ms$/);
    expect((await rejection(clientA.stream(silentPeer, '/echo', 300))).message).toMatch(/timed out after 300 ms$/);
    expect(performance.now() - started).toBeLessThan(3000);
    silent.close();
  });
});

describe('a peer that goes away', () => {
  it('before answering: a PeerError saying so', async () => {
    const { server: leaving, peer } = await startServer();
    const hanging = rejection(clientA.request(peer, 'GET', '/hang'));
    await waitFor('the request at the server', () => seen.includes('a GET /hang'), { intervalMs: 10 });
    await leaving.stop();
    expect((await hanging).message).toBe(`peer meta-edge at ${peer.url} closed the connection before answering GET /hang`);
  });

  it('mid-download: the stream fails with a PeerError', async () => {
    const { server: leaving, peer } = await startServer();
    const stream = await clientA.download(peer, '/endless');
    let received = 0;
    const read = collect(stream.on('data', (chunk: Buffer) => (received += chunk.length)));
    while (received < MiB) await new Promise((resolve) => setTimeout(resolve, 5));
    await leaving.stop();
    const error = await rejection(read);
    expect(error.message).toMatch(/^download of \/endless from peer meta-edge broke off after \d+ of unknown bytes: /);
  });

  it('silent mid-download: the stream fails after the idle timeout', async () => {
    const started = performance.now();
    const error = await rejection(clientA.download(serverPeer, '/stall', { idleTimeoutMs: 300 }).then(collect));
    expect(error.message).toBe(`download of /stall from peer meta-edge broke off after ${MiB} of unknown bytes: peer meta-edge at ${serverPeer.url} sent nothing for 300 ms`);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('mid-stream: the tunnel ends or fails, and the server stops at once', async () => {
    const { server: leaving, peer } = await startServer();
    const tunnel = await clientA.stream(peer, '/echo');
    const closed = new Promise((resolve) => tunnel.on('close', resolve));
    tunnel.on('error', () => undefined);
    tunnel.write(randomBytes(MiB));
    const started = performance.now();
    await leaving.stop();
    await closed;
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

/** A TCP server that accepts and never answers: a peer that hung. */
async function listenSilently(): Promise<{ port: number; close(): void }> {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  return {
    port: (silent.address() as AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    },
  };
}
