/**
 * Safe reloads (issue 15): a profile path that cannot be read (a directory missing for a moment,
 * a dangling `*.yaml` link, a file broken mid-write) keeps the devices it gave, with a warning,
 * across SIGHUP and across a restart; nothing is seeded again over a desired value set since,
 * and the history stays; a reload that fails leaves the next one free. The agent as a child
 * process (SIGHUP, restarts) and in this process (an object source, as the cloud is one), with
 * real MQTT clients and the API.
 */
import { renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { NODE_NAME, spawnAgent, startTestAgent, tempDir, type AgentProcess, type TestAgent } from '../support/agent.js';
import { collect, connectClient } from '../support/mqtt.js';
import { waitFor } from '../support/wait.js';

const MODEL = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermostat, namespace: default}
spec:
  properties:
    - {name: temperature, type: FLOAT, accessMode: ReadOnly}
    - {name: setpoint, type: INT, accessMode: ReadWrite}
`;

/** A thermostat whose manifest seeds the setpoint with 80; no mapper serves it, so only the test writes its twin. */
function thermostat(name: string): string {
  return `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ${name}, namespace: default}
spec:
  deviceModelRef: {name: thermostat}
  protocol: {protocolName: not-served-in-tests}
  properties:
    - {name: temperature}
    - {name: setpoint, desired: {value: "80"}}
`;
}

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** The agent's log lines from now on, parsed. */
function logLines(agent: AgentProcess): LogLine[] {
  const lines: LogLine[] = [];
  let rest = '';
  agent.child.stdout!.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString();
    const complete = text.split('\n');
    rest = complete.pop()!;
    for (const line of complete) if (line.startsWith('{')) lines.push(JSON.parse(line) as LogLine);
  });
  return lines;
}

const dirs: string[] = [];
const running: AgentProcess[] = [];
const clients: MqttClient[] = [];
let inProcess: TestAgent | undefined;

function dir(prefix: string): string {
  const path = tempDir(prefix);
  dirs.push(path);
  return path;
}

async function spawn(profiles: string, data: string): Promise<{ agent: AgentProcess; logs: LogLine[] }> {
  const agent = await spawnAgent(['--profiles', profiles, '--data', data]);
  running.push(agent);
  return { agent, logs: logLines(agent) };
}

async function stop(agent: AgentProcess): Promise<void> {
  agent.child.kill('SIGTERM');
  await agent.exited;
}

/** SIGHUP, then waits for the reload to finish ("devices updated"). */
async function sighup(agent: AgentProcess, logs: LogLine[]): Promise<void> {
  const done = logs.filter((l) => l.msg === 'devices updated').length;
  agent.child.kill('SIGHUP');
  await waitFor('the reload', () => logs.filter((l) => l.msg === 'devices updated').length > done);
}

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync();
  for (const agent of running.splice(0)) await stop(agent);
  await inProcess?.stop();
  inProcess = undefined;
  for (const path of dirs.splice(0)) rmSync(path, { recursive: true, force: true });
});

type Twin = Record<string, { expected?: { value: string }; actual?: { value: string } }>;

async function twinOf(agent: AgentProcess, name: string): Promise<Twin> {
  const response = await agent.api(`/api/v1/devices/default/${name}/twin`);
  expect(response.status).toBe(200);
  return (await response.json()) as Twin;
}

async function history(agent: AgentProcess, name: string, property: string): Promise<string[]> {
  const response = await agent.api(`/api/v1/devices/default/${name}/twin/${property}/history`);
  return ((await response.json()) as { history: Array<{ value: string }> }).history.map((h) => h.value);
}

async function put(agent: AgentProcess, name: string, side: 'desired' | 'reported', values: Record<string, string>): Promise<void> {
  const response = await agent.api(`/api/v1/devices/default/${name}/twin/${side}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(values) });
  expect(response.status).toBe(200);
}

/** A profile directory with the model and `thermostat-1`, its setpoint set to 33 through the API and three temperatures reported. */
async function thermostatWithHistory(): Promise<{ profiles: string; data: string; agent: AgentProcess; logs: LogLine[] }> {
  const profiles = dir('edge-agent-profiles-');
  const data = dir('edge-agent-data-');
  writeFileSync(join(profiles, 'model.yaml'), MODEL);
  writeFileSync(join(profiles, 'thermostat-1.yaml'), thermostat('thermostat-1'));
  const { agent, logs } = await spawn(profiles, data);
  expect((await twinOf(agent, 'thermostat-1')).setpoint?.expected?.value).toBe('80');
  await put(agent, 'thermostat-1', 'desired', { setpoint: '33' });
  for (const value of ['20.5', '21', '21.5']) await put(agent, 'thermostat-1', 'reported', { temperature: value });
  return { profiles, data, agent, logs };
}

async function expectSetpointAndHistoryKept(agent: AgentProcess): Promise<void> {
  expect((await twinOf(agent, 'thermostat-1')).setpoint?.expected?.value).toBe('33');
  expect(await history(agent, 'thermostat-1', 'temperature')).toEqual(['21.5', '21', '20.5']);
}

describe('a profile directory missing for a moment', () => {
  it('during a SIGHUP: the devices stay, with a warning; back, the desired value set through the API and the history are kept', async () => {
    const { profiles, agent, logs } = await thermostatWithHistory();
    const client = await connectClient(agent.mqttUrl);
    clients.push(client);
    const membership = await collect(client, `$hw/events/node/${NODE_NAME}/membership/updated`);

    renameSync(profiles, `${profiles}.away`);
    await sighup(agent, logs);
    await expectSetpointAndHistoryKept(agent);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', manifest: profiles, msg: expect.stringMatching(/^profile path cannot be read: ENOENT/) }));
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', devices: ['default/thermostat-1'], msg: expect.stringContaining('devices kept as last loaded') }));

    renameSync(`${profiles}.away`, profiles);
    await sighup(agent, logs);
    await expectSetpointAndHistoryKept(agent);
    expect(membership.messages).toEqual([]);
  });

  it('at a restart: the twin keeps the devices, unserved, with a warning; back, nothing is seeded again', async () => {
    const { profiles, data, agent } = await thermostatWithHistory();
    await stop(agent);
    renameSync(profiles, `${profiles}.away`);

    const { agent: restarted, logs } = await spawn(profiles, data);
    await expectSetpointAndHistoryKept(restarted);
    await sighup(restarted, logs);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', devices: ['default/thermostat-1'], msg: expect.stringContaining('devices kept in the twin, unserved') }));
    await expectSetpointAndHistoryKept(restarted);

    renameSync(`${profiles}.away`, profiles);
    const warned = logs.length;
    await sighup(restarted, logs);
    await expectSetpointAndHistoryKept(restarted);
    expect(logs.slice(warned).filter((l) => /cannot be read|devices kept/.test(l.msg))).toEqual([]);
  });
});

describe('a profile directory with a file that cannot be read', () => {
  it('a dangling *.yaml link is warned about at every reload, and the reloads go on serving what the others define', async () => {
    const { profiles, agent, logs } = await thermostatWithHistory();
    const link = join(profiles, 'thermostat-9.yaml');
    symlinkSync(join(profiles, 'nowhere.yaml'), link);
    writeFileSync(join(profiles, 'thermostat-2.yaml'), thermostat('thermostat-2'));
    await sighup(agent, logs);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', manifest: link, msg: expect.stringMatching(/^profile path cannot be read: ENOENT/) }));
    expect((await twinOf(agent, 'thermostat-2')).setpoint?.expected?.value).toBe('80');

    // Not a stale failure: the next reload, the link still there, applies its own change.
    writeFileSync(join(profiles, 'thermostat-3.yaml'), thermostat('thermostat-3'));
    await sighup(agent, logs);
    expect(logs.filter((l) => l.manifest === link && l.level === 'warn')).toHaveLength(2);
    expect((await agent.api('/api/v1/devices/default/thermostat-3')).status).toBe(200);
    expect(logs.some((l) => l.level === 'error')).toBe(false);

    // A file read fine that no longer defines a device is the one way a device leaves.
    unlinkSync(join(profiles, 'thermostat-3.yaml'));
    await sighup(agent, logs);
    expect((await agent.api('/api/v1/devices/default/thermostat-3')).status).toBe(404);
    await expectSetpointAndHistoryKept(agent);
  });

  it('a file broken mid-write keeps the devices it gave, as they were, until it is whole again', async () => {
    const { profiles, agent, logs } = await thermostatWithHistory();
    writeFileSync(join(profiles, 'thermostat-1.yaml'), thermostat('thermostat-1').slice(0, 90));
    await sighup(agent, logs);
    await expectSetpointAndHistoryKept(agent);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', devices: ['default/thermostat-1'], msg: expect.stringContaining('devices kept as last loaded') }));

    writeFileSync(join(profiles, 'thermostat-1.yaml'), thermostat('thermostat-1'));
    await sighup(agent, logs);
    await expectSetpointAndHistoryKept(agent);
  });
});

describe('a reload that fails', () => {
  it('leaves the next reload free, and devices from an object source (the cloud) arrive beside a dangling link', async () => {
    const profiles = dir('edge-agent-profiles-');
    writeFileSync(join(profiles, 'model.yaml'), MODEL);
    symlinkSync(join(profiles, 'nowhere.yaml'), join(profiles, 'dangling.yaml'));
    inProcess = await startTestAgent({ profiles: [profiles] });
    const { catalog, twins } = inProcess.agent;

    let failures = 1;
    const objects: Array<{ id: string; object: unknown }> = [];
    catalog.addSource({
      name: 'store',
      origin: 'cloud',
      list() {
        if (failures-- > 0) throw new Error('the object store could not be read');
        return objects;
      },
    });
    await expect(catalog.reload('cloud')).rejects.toThrow('the object store could not be read');

    objects.push({ id: 'default/from-the-cloud', object: yaml.load(thermostat('from-the-cloud')) });
    await catalog.reload('cloud');
    expect(twins.get('default/from-the-cloud')?.twin.get('setpoint')?.expected?.value).toBe('80');
  });
});
