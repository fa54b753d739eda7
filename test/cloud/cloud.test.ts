/**
 * The cloud link against a CloudHub-compatible server (test/support/cloudhub: certificate service,
 * mutual-TLS WebSocket, KubeEdge's beehive messages): the agent runs as a child process, joins
 * with a token, registers its node, serves a device the cloud creates, reports it up, takes
 * desired values down, and loses no report while the cloud is away, even across a kill -9.
 */
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail } from '../../src/twin/routes.js';
import type { CloudStatus } from '../../src/cloud/edgehub.js';
import type { MsgTwin } from '../../src/twin/types.js';
import { newMessage, type BeehiveMessage } from '../../src/cloud/message.js';
import { NODE_NAME, spawnAgent, tempDir, type AgentProcess } from '../support/agent.js';
import { sleep, waitFor } from '../support/wait.js';
import { deviceMessage, deviceModelMessage, startCloudHub, type CloudHub } from '../support/cloudhub/server.js';

const MODEL = {
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'DeviceModel',
  metadata: { name: 'meter', namespace: 'default' },
  spec: {
    protocol: 'virtualProtocol',
    properties: [
      { name: 'count', type: 'INT', accessMode: 'ReadOnly' },
      { name: 'setpoint', type: 'INT', accessMode: 'ReadWrite' },
    ],
  },
};

function device(setpoint: string, resourceVersion?: string) {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: 'meter-01', namespace: 'default', ...(resourceVersion ? { resourceVersion } : {}) },
    spec: {
      deviceModelRef: { name: 'meter' },
      nodeName: NODE_NAME,
      protocol: { protocolName: 'virtualProtocol', configData: {} },
      properties: [
        { name: 'count', collectCycle: 200, reportCycle: 200, reportToCloud: true, visitors: { protocolName: 'virtualProtocol', configData: { function: 'counter' } } },
        { name: 'setpoint', collectCycle: 500, reportToCloud: true, desired: { value: setpoint }, visitors: { protocolName: 'virtualProtocol', configData: { function: 'value' } } },
      ],
    },
  };
}

const TWIN_REPORT = 'device/default/meter-01/twin/edge_updated';


function config(hub: CloudHub, extra: Record<string, unknown> = {}): string {
  const file = join(tempDir('cloud-config-'), 'agent.json');
  const cloud = { enabled: true, server: '127.0.0.1', httpsPort: hub.httpsPort, websocketPort: hub.wsPort, token: hub.token, heartbeatMs: 500, nodeStatusIntervalMs: 500, ...extra };
  writeFileSync(file, JSON.stringify({ cloud }));
  return file;
}

/** Every edge version of `count` the cloud received, by message: redeliveries (same msg_id) apart. */
function countReports(hub: CloudHub): { versions: number[]; redelivered: number } {
  const seen = new Set<string>();
  const versions: number[] = [];
  let redelivered = 0;
  for (const message of hub.received) {
    if (message.route.resource !== TWIN_REPORT) continue;
    if (seen.has(message.header.msg_id)) {
      redelivered++;
      continue;
    }
    seen.add(message.header.msg_id);
    const version = (message.content as { twin: Record<string, MsgTwin> }).twin.count?.actual_version?.edge;
    if (version !== undefined) versions.push(version);
  }
  return { versions, redelivered };
}

describe('the cloud link with a CloudHub', () => {
  let hub: CloudHub;
  let agent: AgentProcess;
  const data = tempDir();
  const profiles = tempDir('cloud-profiles-');
  let configFile: string;
  const start = () => spawnAgent(['--config', configFile, '--data', data, '--profiles', profiles]);
  const get = async <T>(path: string) => (await (await agent.api(path)).json()) as T;
  const twin = () => get<DeviceDetail>('/api/v1/devices/default/meter-01');
  const cloud = () => get<CloudStatus>('/api/v1/cloud');

  beforeAll(async () => {
    hub = await startCloudHub();
    configFile = config(hub);
    agent = await start();
  });

  afterAll(async () => {
    agent?.child.kill('SIGKILL');
    await hub?.stop();
  });

  it('joins with the token: a certificate for system:node:<node>, kept with mode 0600', async () => {
    await waitFor('the node registered', () => hub.nodes.has(NODE_NAME), { timeoutMs: 15_000 });
    expect(hub.issued[0]).toMatchObject({ node: NODE_NAME, cn: `system:node:${NODE_NAME}`, o: 'system:nodes', via: 'token' });
    for (const file of ['ca.crt', 'edge.crt', 'edge.key']) expect(statSync(join(data, 'cloud', file)).mode & 0o777).toBe(0o600);
    expect(hub.handshakes.at(-1)).toMatchObject({ node_id: NODE_NAME, ConnectionUse: 'msg' });
  });

  it('registers a v1.Node from systeminformation, patches its status and keeps the link alive', async () => {
    const { namespace, node } = hub.nodes.get(NODE_NAME)! as { namespace: string; node: { status: Record<string, never> } };
    expect(namespace).toBe('default');
    expect(node.status.capacity).toMatchObject({ cpu: expect.stringMatching(/^\d+$/), memory: expect.stringMatching(/^\d+Ki$/) });
    expect(node.status.nodeInfo).toMatchObject({ architecture: expect.any(String), kernelVersion: expect.any(String), osImage: expect.any(String), operatingSystem: 'linux' });
    await hub.waitFor((m) => m.route.operation === 'patch' && m.route.resource === `default/nodepatch/${NODE_NAME}`, 5000);
    await hub.waitFor((m) => m.route.operation === 'keepalive' && m.content === 'ping', 5000);
    expect((await cloud()).registered).toBe(true);
  });

  it('serves a device the cloud creates, acknowledges it once stored, and reports its values and state up', async () => {
    const model = deviceModelMessage('insert', MODEL);
    const created = deviceMessage('insert', device('20'));
    hub.send(model);
    hub.send(created);
    await waitFor('both acknowledged', () => hub.acked.has(model.header.msg_id) && hub.acked.has(created.header.msg_id));
    const report = await hub.waitFor((m) => m.route.resource === TWIN_REPORT && (m.content as { twin: Record<string, MsgTwin> }).twin.count?.actual !== undefined, 10_000);
    expect(report.route).toMatchObject({ source: 'twin', group: 'resource', operation: 'update' });
    await hub.waitFor((m) => m.route.resource === 'device/default/meter-01/state/update' && (m.content as { device: { state: string } }).device.state === 'online', 10_000);
    // The seeded desired value went to the mapper and came back as reported.
    await waitFor('setpoint 20 reported', async () => (await twin()).twin.setpoint?.actual?.value === '20', { timeoutMs: 10_000 });
  });

  it('takes a desired value the cloud changes down to the mapper, which reports it back up', async () => {
    hub.send(deviceMessage('update', device('42')));
    await waitFor('setpoint 42 reported', async () => (await twin()).twin.setpoint?.actual?.value === '42', { timeoutMs: 10_000 });
    await hub.waitFor((m) => m.route.resource === TWIN_REPORT && (m.content as { twin: Record<string, MsgTwin> }).twin.setpoint?.actual?.value === '42', 10_000);
  });

  it('keeps every report while the cloud is away, works locally, and drains in order without duplicates', async () => {
    await hub.stop();
    await sleep(4000);
    const offline = await cloud();
    expect(offline.link.connected).toBe(false);
    expect(offline.outbox.queued).toBeGreaterThan(5);
    // Local reads and writes go on.
    const before = Number((await twin()).twin.count?.actual?.value);
    await sleep(500);
    expect(Number((await twin()).twin.count?.actual?.value)).not.toBe(before);
    await hub.restart();
    await waitFor('the queue drained', async () => {
      const status = await cloud();
      return status.link.connected && status.outbox.queued === 0 && status.outbox.inFlight === 0;
    }, { timeoutMs: 60_000, intervalMs: 200 });
  });

  it('restarts from SQLite alone while the cloud is away, then sends what it kept', async () => {
    await hub.stop();
    await sleep(2000);
    agent.child.kill('SIGKILL');
    await agent.exited;
    agent = await start();
    // The device came from the cloud, not from a profile: served from SQLite.
    await waitFor('the cloud device served again', async () => (await twin()).state === 'online', { timeoutMs: 10_000 });
    await sleep(1500);
    await hub.restart();
    await waitFor('the queue drained', async () => {
      const status = await cloud();
      return status.link.connected && status.outbox.queued === 0 && status.outbox.inFlight === 0;
    }, { timeoutMs: 60_000, intervalMs: 200 });
    const { versions } = countReports(hub);
    const current = (await twin()).twin.count!.actual_version!.edge;
    // Every report reached the cloud once and in order: edge versions 1…current, none missing, none twice.
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    const distinct = new Set(versions);
    expect(distinct.size).toBe(versions.length);
    expect(Math.max(...versions)).toBeGreaterThanOrEqual(current - 5);
    const missing = [...Array(Math.max(...versions)).keys()].map((i) => i + 1).filter((v) => !distinct.has(v));
    expect(missing).toEqual([]);
  });

  it('survives bad messages from the cloud with a clear error', async () => {
    const before = await cloud();
    hub.sendRaw('{"header": not json');
    hub.sendRaw(JSON.stringify({ route: { operation: 'insert' } }));
    hub.send(newMessage({ source: 'edgecontroller', group: 'resource', operation: 'insert', resource: 'default/pod/nginx' }, {}));
    const invalid = deviceMessage('insert', { ...device('1'), metadata: { name: 'broken', namespace: 'default' }, spec: { protocol: {} } } as never);
    hub.send(invalid);
    await waitFor('the invalid device acknowledged', () => hub.acked.has(invalid.header.msg_id));
    const after = await cloud();
    expect(after.link.badMessages - before.link.badMessages).toBe(2);
    expect(after.unsupportedMessages - before.unsupportedMessages).toBe(1);
    expect(after.devices).toBe(1);
    const alive = await fetch(`${agent.apiUrl}/healthz`);
    expect(alive.status).toBe(200);
  });
});

describe('joining the wrong cloud, and the null namespace', () => {
  let hub: CloudHub;
  let other: CloudHub;
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    hub = await startCloudHub();
    other = await startCloudHub();
  });

  afterAll(async () => {
    for (const agent of agents) agent.child.kill('SIGKILL');
    await hub?.stop();
    await other?.stop();
  });

  it('refuses a cloud whose CA the join token does not pin, and says so', async () => {
    const file = config(hub, { token: other.token });
    const agent = await spawnAgent(['--config', file, '--data', tempDir(), '--profiles', tempDir()]);
    agents.push(agent);
    const status = await waitFor('the join to fail', async () => {
      const s = (await (await agent.api('/api/v1/cloud')).json()) as CloudStatus;
      return s.link.lastError ? s : undefined;
    }, { timeoutMs: 10_000 });
    expect(status.link.lastError).toMatch(/join token does not match the cloud's CA/);
    expect(hub.issued).toHaveLength(0);
  });

  it('registers as null/node/<node> when configured for KubeEdge 1.23 and later', async () => {
    const agent = await spawnAgent(['--config', config(hub, { nodeNamespace: 'null' }), '--data', tempDir(), '--profiles', tempDir()]);
    agents.push(agent);
    await waitFor('the node registered', () => hub.nodes.has(NODE_NAME), { timeoutMs: 15_000 });
    expect(hub.nodes.get(NODE_NAME)!.namespace).toBe('null');
    const insert = hub.received.find((m: BeehiveMessage) => m.route.operation === 'insert');
    expect(insert?.route.resource).toBe(`null/node/${NODE_NAME}`);
  });
});
