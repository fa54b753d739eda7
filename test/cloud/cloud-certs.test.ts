/**
 * The edge's certificate bootstrap and rotation (src/cloud/certs.ts) against the CloudHub-compatible
 * test server (test/support/cloudhub), and a websocket smoke test of that server with the credentials
 * obtained: mutual TLS, the upgrade headers, node registration, acks and twin answers.
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import WebSocket from 'ws';
import { CertificateError, ensureCredentials, rotateCredentials, rotationDelayMs, type CertOptions, type CloudCredentials } from '../../src/cloud/certs.js';
import { DEFAULT_PROJECT_ID, handshakeHeaders, keepalive, newMessage, parseMessage, responseTo, type BeehiveMessage } from '../../src/cloud/message.js';
import { createLogger } from '../../src/log.js';
import { deviceMessage, membershipMessage, startCloudHub, type CloudHub } from '../support/cloudhub/server.js';
import { tempDir } from '../support/agent.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const NODE = 'edge-1';
const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const dirs: string[] = [];
let hub: CloudHub;

function newDir(): string {
  const dir = join(tempDir('cloud-certs-test-'), 'cloud');
  dirs.push(dir);
  return dir;
}

function options(overrides: Partial<CertOptions> = {}): CertOptions {
  return { server: '127.0.0.1', httpsPort: hub.httpsPort, node: NODE, token: hub.token, dir: newDir(), log, ...overrides };
}

async function certificateError(promise: Promise<unknown>): Promise<CertificateError> {
  const error = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(CertificateError);
  return error as CertificateError;
}

const subjectOf = (pem: string) => new X509Certificate(pem).subject;

beforeAll(async () => {
  hub = await startCloudHub();
});

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  await hub.stop();
  for (const dir of dirs) rmSync(join(dir, '..'), { recursive: true, force: true });
});

describe('certificate bootstrap with the join token', () => {
  it('fetches the CA, gets a certificate for O=system:nodes, CN=system:node:<node> and stores it privately', async () => {
    const opts = options();
    const credentials = await ensureCredentials(opts);

    expect(hub.issued.at(-1)).toEqual({ node: NODE, cn: `system:node:${NODE}`, o: 'system:nodes', via: 'token' });
    const cert = new X509Certificate(credentials.certPem);
    expect(cert.subject).toBe(`O=system:nodes\nCN=system:node:${NODE}`);
    expect(cert.verify(new X509Certificate(hub.caPem).publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(credentials.caPem).toBe(new X509Certificate(hub.caPem).toString());
    const lifetimeDays = (credentials.notAfter.getTime() - credentials.notBefore.getTime()) / 86_400_000;
    expect(lifetimeDays).toBeCloseTo(365, 2);

    expect(statSync(opts.dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(opts.dir).sort()).toEqual(['ca.crt', 'edge.crt', 'edge.key']);
    for (const file of ['ca.crt', 'edge.crt', 'edge.key']) expect(statSync(join(opts.dir, file)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(opts.dir, 'ca.crt'), 'utf8')).toBe(credentials.caPem);
    expect(readFileSync(join(opts.dir, 'edge.crt'), 'utf8')).toBe(credentials.certPem);
    expect(readFileSync(join(opts.dir, 'edge.key'), 'utf8')).toBe(credentials.keyPem);
    expect(credentials.keyPem).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
  });

  it('asks for a node name as long as Kubernetes allows (multi-byte DER lengths)', async () => {
    const node = `${'n'.repeat(63)}.${'o'.repeat(63)}.${'d'.repeat(63)}.${'e'.repeat(61)}`;
    const credentials = await ensureCredentials(options({ node }));
    expect(subjectOf(credentials.certPem)).toBe(`O=system:nodes\nCN=system:node:${node}`);
  });

  it('reuses stored credentials without contacting the cloud', async () => {
    const opts = options();
    const first = await ensureCredentials(opts);
    const issued = hub.issued.length;
    await hub.stop();
    try {
      expect(await ensureCredentials({ ...opts, token: undefined })).toEqual(first);
      expect(await ensureCredentials(opts)).toEqual(first);
    } finally {
      await hub.restart();
    }
    expect(hub.issued.length).toBe(issued);
  });

  it('refuses a token whose hash is not that of the served CA, writing nothing', async () => {
    const opts = options({ token: `${'0'.repeat(64)}.${hub.token.split('.').slice(1).join('.')}` });
    const error = await certificateError(ensureCredentials(opts));
    expect(error.message).toMatch(/^join token does not match the cloud's CA: the token pins 0{64}, https:\/\/127\.0\.0\.1:\d+\/ca\.crt served a CA hashing to [0-9a-f]{64}$/);
    expect(error.message).toContain(hub.token.split('.')[0]);
    expect(() => readdirSync(opts.dir)).toThrow(/ENOENT/);
  });

  it('refuses a token that is not <hash>.<JWT>', async () => {
    const error = await certificateError(ensureCredentials(options({ token: 'abc.def' })));
    expect(error.message).toBe('join token is malformed: expected <CA hash>.<JWT>, 4 dot-separated parts, got 2');
  });

  it("surfaces the cloud's 401 for a garbage JWT", async () => {
    const caHash = hub.token.split('.')[0]!;
    const error = await certificateError(ensureCredentials(options({ token: `${caHash}.a.b.c` })));
    expect(error.message).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/edge\.crt answered 401 Unauthorized: Invalid authorization token: token is malformed/);
  });

  it("surfaces the cloud's 401 for an expired JWT", async () => {
    const expiring = await startCloudHub({ tokenTtlS: -60 });
    onTestFinished(() => expiring.stop());
    const error = await certificateError(ensureCredentials(options({ httpsPort: expiring.httpsPort, token: expiring.token })));
    expect(error.message).toMatch(/answered 401 Unauthorized: Invalid authorization token: token has invalid claims: token is expired$/);
    expect(expiring.issued).toEqual([]);
  });

  it('says the cloud is unreachable when nothing listens', async () => {
    const error = await certificateError(ensureCredentials(options({ httpsPort: await freePort() })));
    expect(error.message).toMatch(/^the cloud is unreachable at https:\/\/127\.0\.0\.1:\d+\/ca\.crt: connect ECONNREFUSED/);
  });

  it('needs a token when there are no stored credentials', async () => {
    const error = await certificateError(ensureCredentials(options({ token: undefined })));
    expect(error.message).toMatch(/^no edge certificate in .*cloud, and there is no join token to request a certificate with$/);
  });

  it('needs a token once the stored certificate expired, and bootstraps again with one', async () => {
    // Its JWT must still be valid a year later, when the certificate has expired.
    const longLived = await startCloudHub({ tokenTtlS: 2 * 365 * 86_400 });
    onTestFinished(() => longLived.stop());
    const opts = options({ httpsPort: longLived.httpsPort, token: longLived.token });
    const first = await ensureCredentials(opts);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(first.notAfter.getTime() + 1000);
    const error = await certificateError(ensureCredentials({ ...opts, token: undefined }));
    expect(error.message).toMatch(/^the edge certificate in .* expired on .*, and there is no join token/);
    const again = await ensureCredentials(opts);
    expect(again.certPem).not.toBe(first.certPem);
    expect(again.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(longLived.issued.map((issued) => issued.via)).toEqual(['token', 'token']);
  });

  it('requests a new certificate after a node rename: a stored one is reused only for CN=system:node:<node>', async () => {
    const opts = options();
    const first = await ensureCredentials(opts);
    const renamed = { ...opts, node: 'edge-renamed' };
    const error = await certificateError(ensureCredentials({ ...renamed, token: undefined }));
    expect(error.message).toMatch(/is for system:node:edge-1, not system:node:edge-renamed, and there is no join token/);
    const again = await ensureCredentials(renamed);
    expect(again.certPem).not.toBe(first.certPem);
    expect(subjectOf(again.certPem)).toBe('O=system:nodes\nCN=system:node:edge-renamed');
    expect(hub.issued.at(-1)).toMatchObject({ node: 'edge-renamed', via: 'token' });
    // The new one is reused from now on.
    expect(await ensureCredentials({ ...renamed, token: undefined })).toEqual(again);
  });

  it('does not use a stored key that does not belong to the stored certificate', async () => {
    const opts = options({ token: undefined });
    const first = await ensureCredentials({ ...opts, token: hub.token });
    writeFileSync(join(opts.dir, 'edge.key'), (await ensureCredentials(options())).keyPem);
    const error = await certificateError(ensureCredentials(opts));
    expect(error.message).toMatch(/is unusable: certificate and private key do not belong together, and there is no join token/);
    expect(first.keyPem).not.toBe(readFileSync(join(opts.dir, 'edge.key'), 'utf8'));
  });
});

describe('certificate rotation', () => {
  it('re-issues the certificate for a fresh key, authenticated by the current certificate', async () => {
    const opts = options();
    const current = await ensureCredentials(opts);
    const rotated = await rotateCredentials(current, { ...opts, token: undefined });

    expect(hub.issued.at(-1)).toEqual({ node: NODE, cn: `system:node:${NODE}`, o: 'system:nodes', via: 'client-cert' });
    expect(rotated.keyPem).not.toBe(current.keyPem);
    expect(rotated.certPem).not.toBe(current.certPem);
    expect(subjectOf(rotated.certPem)).toBe(subjectOf(current.certPem));
    expect(rotated.caPem).toBe(current.caPem);
    expect(readFileSync(join(opts.dir, 'edge.crt'), 'utf8')).toBe(rotated.certPem);
    expect(readFileSync(join(opts.dir, 'edge.key'), 'utf8')).toBe(rotated.keyPem);
    expect(readdirSync(opts.dir).sort()).toEqual(['ca.crt', 'edge.crt', 'edge.key']);
    expect(await ensureCredentials({ ...opts, token: undefined })).toEqual(rotated);
  });

  it("is refused with another node's certificate", async () => {
    const other = await ensureCredentials(options({ node: 'edge-2' }));
    const error = await certificateError(rotateCredentials(other, options({ token: undefined })));
    expect(error.message).toMatch(/answered 401 Unauthorized: client certificate subject O=system:nodes, CN=system:node:edge-2 is not O=system:nodes, CN=system:node:edge-1$/);
  });

  it('does not trust a cloud with another CA', async () => {
    const current = await ensureCredentials(options());
    const impostor = await startCloudHub();
    onTestFinished(() => impostor.stop());
    const error = await certificateError(rotateCredentials(current, options({ httpsPort: impostor.httpsPort, token: undefined })));
    expect(error.message).toMatch(/^TLS with the cloud at https:\/\/127\.0\.0\.1:\d+\/edge\.crt failed: self-signed certificate in certificate chain$/);
    expect(impostor.issued).toEqual([]);
  });

  it('says the cloud is unreachable when it is down', async () => {
    const opts = options();
    const current = await ensureCredentials(opts);
    await hub.stop();
    try {
      const error = await certificateError(rotateCredentials(current, opts));
      expect(error.message).toMatch(/^the cloud is unreachable at https:\/\/127\.0\.0\.1:\d+\/edge\.crt: connect ECONNREFUSED/);
    } finally {
      await hub.restart();
    }
  });

  it('is due at a random point between 70 % and 90 % of the lifetime', () => {
    const notBefore = new Date('2025-01-01T00:00:00Z');
    const notAfter = new Date('2025-01-11T00:00:00Z'); // 10 days
    const credentials = { caPem: '', certPem: '', keyPem: '', notBefore, notAfter } satisfies CloudCredentials;
    const day = 86_400_000;
    expect(rotationDelayMs(credentials, notBefore.getTime(), () => 0)).toBe(7 * day);
    expect(rotationDelayMs(credentials, notBefore.getTime(), () => 1)).toBe(9 * day);
    expect(rotationDelayMs(credentials, notBefore.getTime() + day, () => 0.5)).toBe(7 * day);
    expect(rotationDelayMs(credentials, notAfter.getTime(), () => 0.5)).toBe(0);
    const delay = rotationDelayMs(credentials, notBefore.getTime());
    expect(delay).toBeGreaterThanOrEqual(7 * day);
    expect(delay).toBeLessThanOrEqual(9 * day);
  });
});

interface Edge {
  socket: WebSocket;
  /** Downstream messages received so far. */
  received: BeehiveMessage[];
  next(predicate: (message: BeehiveMessage) => boolean): Promise<BeehiveMessage>;
  send(message: BeehiveMessage): void;
}

function connect(
  credentials: CloudCredentials,
  headers: Record<string, string>,
  tls: { cert?: string; key?: string } = { cert: credentials.certPem, key: credentials.keyPem },
): Promise<Edge> {
  const url = `wss://127.0.0.1:${hub.wsPort}/${DEFAULT_PROJECT_ID}/${NODE}/events`;
  const socket = new WebSocket(url, { headers, ca: credentials.caPem, ...tls });
  const received: BeehiveMessage[] = [];
  const listeners = new Set<() => void>();
  socket.on('message', (data: Buffer) => {
    received.push(parseMessage(data.toString('utf8')));
    for (const listener of listeners) listener();
  });
  const edge: Edge = {
    socket,
    received,
    send: (message) => socket.send(JSON.stringify(message)),
    next: (predicate) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = received.find(predicate);
          if (!found) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching downstream message; got ${received.map((m) => `${m.route.operation} ${m.route.resource}`).join(', ')}`));
        }, 5000);
        listeners.add(check);
        check();
      }),
  };
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(edge));
    socket.once('unexpected-response', (_, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
    socket.once('error', reject);
  });
}

function closed(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

describe('the CloudHub websocket with these credentials', () => {
  let credentials: CloudCredentials;

  beforeAll(async () => {
    credentials = await ensureCredentials(options());
  });

  describe('once connected', () => {
    let edge: Edge;
    const twinReport = (resource: string, content: unknown) => newMessage({ source: 'twin', group: 'resource', operation: 'update', resource }, content);

    beforeAll(async () => {
      edge = await connect(credentials, handshakeHeaders(NODE, DEFAULT_PROJECT_ID));
    });

    afterAll(async () => {
      edge.socket.terminate();
      await waitFor('the hub to see the edge go', () => hub.connections === 0);
    });

    it('records the handshake', () => {
      expect(hub.connections).toBe(1);
      expect(hub.handshakes.at(-1)).toEqual({ node_id: NODE, project_id: DEFAULT_PROJECT_ID, ConnectionUse: 'msg', path: `/${DEFAULT_PROJECT_ID}/${NODE}/events` });
    });

    it('registers the node and answers with its ObjectResp', async () => {
      const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE }, status: { conditions: [{ type: 'Ready', status: 'False' }] } };
      const insert = newMessage({ source: 'edged', group: 'meta', operation: 'insert', resource: `default/node/${NODE}` }, node);
      edge.send(insert);
      const registered = await edge.next((m) => m.header.parent_msg_id === insert.header.msg_id);
      expect(registered.route).toEqual({ source: 'edgecontroller', group: 'resource', operation: 'response', resource: `default/node/${NODE}` });
      expect(registered.content).toMatchObject({ Object: { kind: 'Node', metadata: { name: NODE, uid: expect.any(String) } }, Err: null });
      expect(hub.nodes.get(NODE)).toMatchObject({ namespace: 'default', node: { metadata: { name: NODE } } });
    });

    it('answers a second registration of the node with AlreadyExists and no object, as the apiserver does', async () => {
      const insert = newMessage({ source: 'edged', group: 'meta', operation: 'insert', resource: `default/node/${NODE}` }, { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
      edge.send(insert);
      const answer = await edge.next((m) => m.header.parent_msg_id === insert.header.msg_id);
      expect(answer.content).toMatchObject({ Object: null, Err: { ErrStatus: { reason: 'AlreadyExists', code: 409 } } });
    });

    it('patches the node status, given as JSON or base64 of it', async () => {
      const conditions = [
        { type: 'Ready', status: 'True' },
        { type: 'MemoryPressure', status: 'False' },
      ];
      const patch = JSON.stringify({ status: { conditions } });
      for (const content of [patch, Buffer.from(patch).toString('base64url')]) {
        const request = newMessage({ source: 'edged', group: 'meta', operation: 'patch', resource: `default/nodepatch/${NODE}` }, content);
        edge.send(request);
        const patched = await edge.next((m) => m.header.parent_msg_id === request.header.msg_id);
        expect(patched.header.resourceversion).toMatch(/^\d+$/);
        expect(patched.content).toMatchObject({ Object: { status: { conditions } }, Err: null });
      }
    });

    it('confirms twin reports with "OK" unless told not to, and never answers keepalives', async () => {
      hub.devices.add('default/sensor');
      const report = twinReport('device/default/sensor/twin/edge_updated', { event_id: 'e1', timestamp: 1, twin: {} });
      edge.send(report);
      const confirmed = await edge.next((m) => m.header.parent_msg_id === report.header.msg_id);
      expect(confirmed.route).toEqual({ source: 'devicecontroller', group: 'twin', operation: 'response', resource: 'twin' });
      expect(confirmed.content).toBe('OK');

      hub.answerTwin = false;
      const unanswered = [twinReport('device/default/sensor/state/update', '{"device":{"state":"online"}}'), keepalive()];
      for (const message of unanswered) edge.send(message);
      await hub.waitFor((m) => m.header.msg_id === unanswered[1]!.header.msg_id);
      hub.answerTwin = true;
      const marker = twinReport('device/default/sensor/state/update', '{"device":{"state":"online"}}');
      edge.send(marker);
      await edge.next((m) => m.header.parent_msg_id === marker.header.msg_id);
      const answered = new Set(edge.received.map((m) => m.header.parent_msg_id));
      expect(unanswered.filter((m) => answered.has(m.header.msg_id))).toEqual([]);
    });

    it('answers nothing for a device it does not know, nor when the status patch fails', async () => {
      hub.devices.add('default/sensor');
      const unknown = twinReport('device/default/nobody/twin/edge_updated', { event_id: 'u', timestamp: 1, twin: {} });
      edge.send(unknown);
      hub.failPatches = true;
      const failing = twinReport('device/default/sensor/twin/edge_updated', { event_id: 'f', timestamp: 1, twin: {} });
      edge.send(failing);
      await hub.waitFor((m) => m.header.msg_id === failing.header.msg_id);
      hub.failPatches = false;
      const marker = twinReport('device/default/sensor/state/update', '{"device":{"state":"online"}}');
      edge.send(marker);
      await edge.next((m) => m.header.parent_msg_id === marker.header.msg_id);
      const answered = new Set(edge.received.map((m) => m.header.parent_msg_id));
      expect(answered.has(unknown.header.msg_id)).toBe(false);
      expect(answered.has(failing.header.msg_id)).toBe(false);
    });

    it('sends a message needing an acknowledgement again every resendMs until acknowledged', async () => {
      hub.resendMs = 100;
      try {
        const message = newMessage({ source: 'edgecontroller', group: 'resource', operation: 'insert', resource: 'default/configmap/settings' }, { data: {} });
        hub.send(message);
        await waitFor('three deliveries', () => (hub.deliveries.get(message.header.msg_id) ?? 0) >= 3, { timeoutMs: 5000 });
        edge.send(responseTo(message, 'OK'));
        await waitFor('the ack seen', () => hub.acked.has(message.header.msg_id));
        const delivered = hub.deliveries.get(message.header.msg_id)!;
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(hub.deliveries.get(message.header.msg_id)).toBe(delivered);
        expect(edge.received.filter((m) => m.header.msg_id === message.header.msg_id).length).toBe(delivered);
      } finally {
        hub.resendMs = 5000;
      }
    });

    it('sends device messages as devicecontroller does and records the acks', async () => {
      const membership = membershipMessage([{ id: 'default/sensor', name: 'sensor', description: 'a sensor' }]);
      const device = deviceMessage('insert', { metadata: { name: 'sensor', namespace: 'default', resourceVersion: '42' }, spec: { nodeName: NODE } });
      hub.send(membership);
      hub.send(device);
      const downstream = await edge.next((m) => m.header.msg_id === device.header.msg_id);
      expect(downstream).toMatchObject({
        header: { resourceversion: '42' },
        route: { source: 'devicecontroller', group: 'resource', operation: 'insert', resource: 'default/device/sensor' },
        content: { apiVersion: 'devices.kubeedge.io/v1beta1', kind: 'Device', metadata: { name: 'sensor' } },
      });
      const members = edge.received.find((m) => m.header.msg_id === membership.header.msg_id);
      expect(members?.route).toEqual({ source: 'devicecontroller', group: 'twin', operation: 'update', resource: 'membership' });
      expect(members?.content).toMatchObject({ added_devices: [{ id: 'default/sensor', name: 'sensor', description: 'a sensor' }], removed_devices: null });

      const ack = responseTo(downstream, 'OK');
      edge.send(ack);
      await hub.waitFor((m) => m.header.msg_id === ack.header.msg_id);
      expect(hub.acked.has(device.header.msg_id)).toBe(true);
      expect(hub.acked.has(membership.header.msg_id)).toBe(false);
    });

    it('records bad frames and keeps the connection', async () => {
      edge.socket.send('not json');
      edge.socket.send('{"header":{},"route":{}}');
      const after = keepalive();
      edge.send(after);
      await hub.waitFor((m) => m.header.msg_id === after.header.msg_id);
      expect(hub.errors.filter((e) => e.startsWith('bad frame'))).toEqual([
        expect.stringMatching(/^bad frame from edge-1: malformed JSON/),
        'bad frame from edge-1: not a beehive message: header.msg_id: required; route.operation: required',
      ]);
    });
  });

  it('is cut by dropConnections and reachable again after a restart on the same port', async () => {
    const port = hub.wsPort;
    const edge = await connect(credentials, handshakeHeaders(NODE, DEFAULT_PROJECT_ID));
    hub.dropConnections();
    await closed(edge.socket);
    await hub.stop();
    await expect(connect(credentials, handshakeHeaders(NODE, DEFAULT_PROJECT_ID))).rejects.toThrow(/ECONNREFUSED/);
    await hub.restart();
    expect(hub.wsPort).toBe(port);
    const again = await connect(credentials, handshakeHeaders(NODE, DEFAULT_PROJECT_ID));
    again.socket.terminate();
  });

  it('refuses an upgrade without ConnectionUse: msg', async () => {
    const { ConnectionUse: _, ...headers } = handshakeHeaders(NODE, DEFAULT_PROJECT_ID);
    await expect(connect(credentials, headers)).rejects.toThrow('upgrade answered 400');
    expect(hub.errors.at(-1)).toBe('refused upgrade: ConnectionUse is missing, not "msg"');
    await expect(connect(credentials, { ...headers, ConnectionUse: 'stream' })).rejects.toThrow('upgrade answered 400');
    await expect(connect(credentials, { project_id: DEFAULT_PROJECT_ID, ConnectionUse: 'msg' })).rejects.toThrow('upgrade answered 400');
    expect(hub.errors.at(-1)).toBe('refused upgrade: node_id header missing');
  });

  it("refuses another node's certificate, and a client without one", async () => {
    const other = await ensureCredentials(options({ node: 'edge-2' }));
    await expect(connect(other, handshakeHeaders(NODE, DEFAULT_PROJECT_ID))).rejects.toThrow('upgrade answered 400');
    expect(hub.errors.at(-1)).toBe('refused upgrade: client certificate CN system:node:edge-2 is not system:node:edge-1');

    await expect(connect(credentials, handshakeHeaders(NODE, DEFAULT_PROJECT_ID), {})).rejects.toThrow();
    await expect.poll(() => hub.errors.at(-1)).toMatch(/^TLS handshake on the hub failed: .*certificate/i);
    expect(hub.connections).toBe(0);
  });
});
