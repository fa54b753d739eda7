/**
 * The cloud link against a CloudHub-compatible server (test/support/cloudhub: certificate service,
 * mutual-TLS WebSocket, KubeEdge's beehive messages, re-sending what the edge does not acknowledge,
 * answering nothing on errors): the agent runs as a child process, joins with a token, registers
 * its node, serves a device the cloud creates, reports it up, takes desired values down, stores
 * and acknowledges the other resources, and loses no report while the cloud is away, even across
 * a kill -9, nor stalls when the cloud leaves reports unanswered. MQTT clients are the mqtt package's.
 */
import { execFileSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail } from '../../src/twin/routes.js';
import type { CloudStatus } from '../../src/cloud/edgehub.js';
import type { MsgTwin } from '../../src/twin/types.js';
import { newMessage, type BeehiveMessage } from '../../src/cloud/message.js';
import { CLI, NODE_NAME, spawnAgent, tempDir, type AgentProcess } from '../support/agent.js';
import { connectClient, request } from '../support/mqtt.js';
import { sleep, waitFor } from '../support/wait.js';
import { reportedVersions } from '../support/cloudhub/reports.js';
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
    const state = await hub.waitFor((m) => m.route.resource === 'device/default/meter-01/state/update' && (m.content as { device: { state: string } }).device.state === 'online', 10_000);
    // KubeEdge 1.23 by default: CloudCore ≥ 1.18 reads only lastOnlineTime, RFC 3339 UTC from 1.19.
    const reported = (state.content as { device: Record<string, string> }).device;
    expect(Object.keys(reported).sort()).toEqual(['lastOnlineTime', 'name', 'state']);
    expect(reported.lastOnlineTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(Math.abs(Date.parse(reported.lastOnlineTime!) - Date.now())).toBeLessThan(60_000);
    // The seeded desired value went to the mapper and came back as reported.
    await waitFor('setpoint 20 reported', async () => (await twin()).twin.setpoint?.actual?.value === '20', { timeoutMs: 10_000 });
  });

  it('takes a desired value the cloud changes down to the mapper, which reports it back up', async () => {
    hub.send(deviceMessage('update', device('42')));
    await waitFor('setpoint 42 reported', async () => (await twin()).twin.setpoint?.actual?.value === '42', { timeoutMs: 10_000 });
    await hub.waitFor((m) => m.route.resource === TWIN_REPORT && (m.content as { twin: Record<string, MsgTwin> }).twin.setpoint?.actual?.value === '42', 10_000);
  });

  it('stores every other resource the cloud sends, acknowledges it once stored, lists it, and says pods are not run', async () => {
    const pod = newMessage(
      { source: 'edgecontroller', group: 'resource', operation: 'insert', resource: 'default/pod/nginx' },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nginx', namespace: 'default', uid: 'uid-nginx' }, spec: { containers: [{ name: 'nginx', image: 'nginx' }] } },
      { resourceversion: '7' },
    );
    const configmap = newMessage({ source: 'edgecontroller', group: 'resource', operation: 'insert', resource: 'default/configmap/settings' }, { data: { a: '1' } });
    const secret = newMessage({ source: 'edgecontroller', group: 'resource', operation: 'update', resource: 'default/secret/keys' }, { data: { k: 'dg==' } });
    const gone = newMessage({ source: 'edgecontroller', group: 'resource', operation: 'insert', resource: 'default/service/web' }, { spec: {} });
    for (const message of [pod, configmap, secret, gone]) hub.send(message);
    await waitFor('all four acknowledged', () => [pod, configmap, secret, gone].every((m) => hub.acked.has(m.header.msg_id)));
    const deleted = newMessage({ source: 'edgecontroller', group: 'resource', operation: 'delete', resource: 'default/service/web' }, { metadata: { name: 'web' } });
    hub.send(deleted);
    await waitFor('the delete acknowledged', () => hub.acked.has(deleted.header.msg_id));
    expect(hub.unacknowledged).toBe(0);
    const status = await cloud();
    expect(status.resources).toEqual([
      { key: 'default/configmap/settings', type: 'configmap' },
      { key: 'default/pod/nginx', type: 'pod', resourceVersion: '7' },
      { key: 'default/secret/keys', type: 'secret' },
    ]);
    const podStatus = await hub.waitFor((m) => m.route.resource === 'default/podstatus/nginx');
    expect(podStatus.route).toMatchObject({ source: 'edged', group: 'meta', operation: 'update' });
    expect(podStatus.content).toMatchObject({ UID: 'uid-nginx', Name: 'nginx', Status: { phase: 'Pending', reason: 'NotSupported' } });
    const printed = execFileSync(process.execPath, [CLI, 'cloud', '--api', agent.apiUrl, '--token', agent.token], { encoding: 'utf8' });
    expect(printed).toMatch(/3 other resources/);
    expect(printed).toMatch(/^pod\s+default\/pod\/nginx\s+7\s+stored, not run$/m);
    expect(printed).toMatch(/^configmap\s+default\/configmap\/settings\s+-\s+stored$/m);
  });

  it("answers twin/update with EdgeCore's error texts", async () => {
    const client = await connectClient(agent.mqttUrl, 'cloud-test-errors');
    try {
      const ask = async (device: string, payload: string) => {
        const topic = `$hw/events/device/${device}/twin/update`;
        return (await request(client, topic, payload, `${topic}/result`)).reason;
      };
      expect(await ask('default/meter-01', '{"event_id":"t","twin":{"count":{"actual":{"value":"1"},"metadata":{"type":"complex"}}}}')).toBe('the value type is not allowed');
      expect(await ask('default/nobody', '{"event_id":"n","twin":{"count":{"actual":{"value":"1"}}}}')).toBe('update rejected due to the device is not existed');
      expect(await ask('default/meter-01', '{"event_id":"m"}')).toBe('Update twin error, key:twin does not exist');
      expect(await ask('default/meter-01', '{"event_id":"m","twin":null}')).toBe('Update twin error, key:twin does not exist');
      expect(await ask('default/meter-01', '{"twin":')).toBe('Unmarshal update request body failed, please check the request');
      expect(await ask('default/meter-01', '{"event_id":"u","twin":{"count":{"actual":{"value":5}}}}')).toBe('Unmarshal update request body failed, please check the request');
    } finally {
      await client.endAsync();
    }
  });

  it('keeps every report while the cloud is away, works locally, and drains in order without duplicates', async () => {
    await hub.stop();
    await sleep(4000);
    const offline = await cloud();
    expect(offline.link.connected).toBe(false);
    expect(offline.outbox.queued).toBeGreaterThan(5);
    // The oldest report waits since about when the cloud went away.
    expect(offline.outbox.oldestAgeMs).toBeGreaterThan(2000);
    expect(offline.outbox.oldestAgeMs).toBeLessThan(30_000);
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

  it('counts the node registered when the cloud answers the registration after a reconnect with AlreadyExists', async () => {
    const inserts = hub.received.filter((m) => m.route.operation === 'insert' && m.route.resource === `default/node/${NODE_NAME}`);
    expect(inserts.length).toBeGreaterThanOrEqual(2);
    await waitFor('registered again', async () => (await cloud()).registered);
  });

  it('restarts from SQLite alone while the cloud is away, then sends what it kept', async () => {
    await hub.stop();
    await sleep(2000);
    agent.child.kill('SIGKILL');
    await agent.exited;
    agent = await start();
    // The device came from the cloud, not from a profile: served from SQLite, as are the other resources.
    await waitFor('the cloud device served again', async () => (await twin()).state === 'online', { timeoutMs: 10_000 });
    expect((await cloud()).resources.map((r) => r.key)).toEqual(['default/configmap/settings', 'default/pod/nginx', 'default/secret/keys']);
    await sleep(1500);
    await hub.restart();
    await waitFor('the queue drained', async () => {
      const status = await cloud();
      return status.link.connected && status.outbox.queued === 0 && status.outbox.inFlight === 0;
    }, { timeoutMs: 60_000, intervalMs: 200 });
    const { versions } = reportedVersions(hub.received, TWIN_REPORT, 'count');
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
    hub.send(newMessage({ source: 'router', group: 'user', operation: 'upload', resource: 'rule/r1' }, {}));
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

describe('a CloudCore 1.17 that leaves reports unanswered', () => {
  let hub: CloudHub;
  let agent: AgentProcess;
  const cloud = async () => (await (await agent.api('/api/v1/cloud')).json()) as CloudStatus;
  const WINDOW = 4;

  beforeAll(async () => {
    hub = await startCloudHub();
    agent = await spawnAgent(['--config', config(hub, { kubeedgeVersion: '1.17', window: WINDOW, resendMs: 500 }), '--data', tempDir(), '--profiles', tempDir('cloud-profiles-')]);
    await waitFor('the node registered', () => hub.nodes.has(NODE_NAME), { timeoutMs: 15_000 });
    hub.send(deviceModelMessage('insert', MODEL));
    hub.send(deviceMessage('insert', device('20')));
  });

  afterAll(async () => {
    agent?.child.kill('SIGKILL');
    await hub?.stop();
  });

  it('sends state as 1.17 did: last_online in local "2006-01-02 15:04:05"', async () => {
    const state = await hub.waitFor((m) => m.route.resource === 'device/default/meter-01/state/update', 10_000);
    const reported = (state.content as { device: Record<string, string> }).device;
    expect(Object.keys(reported).sort()).toEqual(['last_online', 'name', 'state']);
    expect(reported.last_online).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
  });

  it('sends unanswered reports again under the same id, and new ones past the window, until the cloud answers', async () => {
    await hub.waitFor((m) => m.route.resource === TWIN_REPORT, 10_000);
    hub.failPatches = true;
    const from = hub.received.length;
    const sends = () => {
      const counts = new Map<string, number>();
      for (const m of hub.received.slice(from)) if (m.route.resource === TWIN_REPORT) counts.set(m.header.msg_id, (counts.get(m.header.msg_id) ?? 0) + 1);
      return counts;
    };
    await waitFor('reports past the window, some sent again', () => {
      const counts = sends();
      return counts.size > 3 * WINDOW && [...counts.values()].some((n) => n >= 2);
    }, { timeoutMs: 15_000, intervalMs: 100 });
    const stuck = await cloud();
    expect(stuck.link.connected).toBe(true);
    expect(stuck.outbox.unconfirmed).toBeGreaterThan(WINDOW);
    expect(stuck.outbox.resent).toBeGreaterThan(0);
    hub.failPatches = false;
    await waitFor('the queue drained', async () => {
      const status = await cloud();
      return status.outbox.queued === 0 && status.outbox.inFlight === 0 && status.outbox.unconfirmed === 0;
    }, { timeoutMs: 15_000, intervalMs: 100 });
  });
});
