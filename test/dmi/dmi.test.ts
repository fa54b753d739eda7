/**
 * KubeEdge DMI against a mapper process that behaves as mapper-framework does
 * (test/fixtures/dmi/mapper.mjs, built from the upstream proto): registration and what it
 * answers, reports into the twin, states, desired values as UpdateDevice, devices and models
 * following profile reloads, a mapper that stops and registers again, and an agent killed with
 * its socket left behind.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceSummary } from '../../src/twin/routes.js';
import { ROOT, spawnAgent, startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { startTestMapper, type MapperEvent, type TestMapper } from '../support/dmi-mapper.js';
import { waitFor } from '../support/wait.js';

const MODEL = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: { name: thermo-model, namespace: default }
spec:
  protocol: testdmi
  properties:
    - { name: temperature, type: INT, accessMode: ReadOnly, minimum: 0, maximum: 100, unit: C, description: room temperature }
    - { name: setpoint, type: INT, accessMode: ReadWrite }
`;

const device = (name: string, model = 'thermo-model', extra = '') => `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: { name: ${name}, namespace: default }
spec:
  deviceModelRef: { name: ${model} }
  protocol:
    protocolName: testdmi
    configData: { ip: 10.0.0.1, port: 502, enabled: true }
  stateReport: { reportCycle: 5000, reportToCloud: true }
  methods: [{ name: tune, description: set the target, propertyNames: [setpoint] }]
  properties:
    - name: temperature
      collectCycle: 1000
      reportCycle: 2000
      reportToCloud: true
      visitors: { protocolName: testdmi, configData: { register: HoldingRegister, offset: 2 } }
      pushMethod:
        mqtt: { address: "tcp://127.0.0.1:1883", topic: thermo, qos: 1, retained: false }
        dbMethod: { influxdb2: { influxdb2ClientConfig: { url: "http://127.0.0.1:8086", org: o, bucket: b }, influxdb2DataConfig: { measurement: m, tag: { unit: C }, fieldKey: t } } }
    - name: setpoint
      desired: { value: "21" }
      visitors: { protocolName: testdmi, configData: { register: HoldingRegister, offset: 3 } }
${extra}`;

const OTHERS = `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: { name: other-protocol, namespace: default }
spec:
  deviceModelRef: { name: thermo-model }
  protocol: { protocolName: someotherprotocol }
  properties: []
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: { name: other-node, namespace: default }
spec:
  deviceModelRef: { name: thermo-model }
  nodeName: somewhere-else
  protocol: { protocolName: testdmi }
  properties: []
`;

const PROTO = join(ROOT, 'src/dmi/api.proto');
const dmi = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { keepCase: true, defaults: true })).v1beta1 as grpc.GrpcObject;

/** One DeviceManagerService call as a mapper makes it; resolves with the error, if any. */
function callAgent(socket: string, method: string, request: object): Promise<grpc.ServiceError | null> {
  const Service = dmi.DeviceManagerService as grpc.ServiceClientConstructor;
  const client = new Service(`unix:${socket}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    (client[method] as (r: object, o: object, cb: (e: grpc.ServiceError | null) => void) => void)(request, { deadline: Date.now() + 1000 }, (error) => {
      client.close();
      resolve(error);
    });
  });
}

interface ReadableDevice {
  name: string;
  namespace: string;
  spec: { deviceModelReference: string; protocol: { protocolName: string; configData: Record<string, unknown> }; properties: Array<Record<string, any>>; methods: unknown[] };
  status: { reportCycle: string | number; reportToCloud: boolean } | null;
}

const devicesIn = (event: MapperEvent) => event.devices as ReadableDevice[];
const calledWith = (method: string, name?: string) => (event: MapperEvent) =>
  event.event === 'call' && event.method === method && (!name || JSON.stringify(event.request).includes(`"${name}"`));

describe('DMI: a mapper-framework mapper against the agent', () => {
  let profiles: string;
  let agent: TestAgent;
  let socket: string;
  let mapperSocket: string;
  let mapper: TestMapper | undefined;
  const summary = async (id: string) => ((await (await agent.api('/api/v1/devices')).json()) as { devices: DeviceSummary[] }).devices.find((d) => d.id === id);
  const twin = async (id: string) => (await (await agent.api(`/api/v1/devices/${id}/twin`)).json()) as Record<string, { actual?: { value: string }; expected?: { value: string } }>;

  beforeAll(async () => {
    profiles = tempDir('dmi-profiles-');
    writeFileSync(join(profiles, 'model.yaml'), MODEL);
    writeFileSync(join(profiles, 'thermo-1.yaml'), device('thermo-1'));
    writeFileSync(join(profiles, 'others.yaml'), OTHERS);
    agent = await startTestAgent({ profiles: [profiles, join(ROOT, 'device-profiles/demo/counter.yaml')] });
    socket = join(agent.dataDir, 'dmi.sock');
    mapperSocket = join(agent.dataDir, 'mapper.sock');
  });

  afterEach(async () => {
    await mapper?.kill();
    mapper = undefined;
  });

  afterAll(async () => {
    await agent.stop();
    rmSync(profiles, { recursive: true, force: true });
  });

  it('registration answers with the devices of this node the protocol serves and their models, as EdgeCore builds them', async () => {
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    const registered = await mapper.next('registration', (e) => e.event === 'registered');
    const [thermo, ...rest] = devicesIn(registered);
    expect(rest).toEqual([]);
    expect(thermo!.name).toBe('thermo-1');
    expect(thermo!.namespace).toBe('default');
    expect(thermo!.spec.deviceModelReference).toBe('thermo-model');
    // Strings as StringValue, booleans as BoolValue, numbers as FloatValue (dataToAny).
    expect(thermo!.spec.protocol).toEqual({ protocolName: 'testdmi', configData: { ip: '10.0.0.1', port: 502, enabled: true } });
    const [temperature, setpoint] = thermo!.spec.properties;
    expect(temperature).toMatchObject({
      name: 'temperature',
      desired: { value: '', metadata: {} },
      visitors: { protocolName: 'testdmi', configData: { register: 'HoldingRegister', offset: 2 } },
      reportCycle: 2000,
      collectCycle: 1000,
      reportToCloud: true,
      pushMethod: {
        mqtt: { address: 'tcp://127.0.0.1:1883', topic: 'thermo', qos: 1, retained: false },
        dbMethod: { influxdb2: { influxdb2ClientConfig: { url: 'http://127.0.0.1:8086', org: 'o', bucket: 'b' }, influxdb2DataConfig: { measurement: 'm', tag: { unit: 'C' }, fieldKey: 't' } } },
      },
    });
    expect(setpoint).toMatchObject({ name: 'setpoint', desired: { value: '21', metadata: { type: 'int' } } });
    expect(thermo!.spec.methods).toEqual([{ name: 'tune', description: 'set the target', propertyNames: ['setpoint'] }]);
    expect(thermo!.status).toMatchObject({ reportCycle: 5000, reportToCloud: true });
    expect(registered.models).toEqual([
      {
        name: 'thermo-model',
        namespace: 'default',
        spec: {
          commands: [],
          properties: [
            { name: 'temperature', description: 'room temperature', type: 'INT', accessMode: 'ReadOnly', minimum: '0', maximum: '100', unit: 'C' },
            { name: 'setpoint', description: '', type: 'INT', accessMode: 'ReadWrite', minimum: '', maximum: '', unit: '' },
          ],
        },
      },
    ]);
  });

  it('a registration without a protocol is refused as EdgeCore refuses it', async () => {
    const error = await callAgent(socket, 'MapperRegister', { withData: true, mapper: { name: 'nameless', address: Buffer.from(mapperSocket) } });
    expect(error?.details).toBe('fail to register mapper nameless because the protocol is nil');
  });

  it('reports go into the twin and states set the state and the last-online time; malformed reports are refused with EdgeCore’s words', async () => {
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    await mapper.next('a report', (e) => e.event === 'reported' && e.property === 'temperature');
    const values = await waitFor('the temperature in the twin', async () => (await twin('default/thermo-1')).temperature?.actual?.value);
    expect(Number(values)).toBeGreaterThan(0);
    const device = await waitFor('state ok', async () => {
      const d = await summary('default/thermo-1');
      return d?.state === 'ok' && d;
    });
    expect(device.lastOnline).not.toBe('');
    expect(device.servedBy).toBe('dmi:test-mapper');

    expect((await callAgent(socket, 'ReportDeviceStatus', { deviceName: 'thermo-1', deviceNamespace: 'default', reportedDevice: { twins: [] } }))?.details).toBe('ReportDeviceStatusRequest does not have twin data');
    expect((await callAgent(socket, 'ReportDeviceStates', { deviceName: 'thermo-1', deviceNamespace: 'default', state: '' }))?.details).toBe('ReportDeviceStatesRequest is invalid data');
    const unknown = await callAgent(socket, 'ReportDeviceStatus', { deviceName: 'nobody', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'x', reported: { value: '1' } }] } });
    expect(unknown?.details).toMatch(/device is not existed/);
    const badType = await callAgent(socket, 'ReportDeviceStatus', { deviceName: 'thermo-1', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'temperature', reported: { value: 'warm' } }] } });
    expect(badType?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('who serves each device: the DMI mapper, a built-in mapper, or nobody', async () => {
    expect((await summary('default/other-protocol'))?.servedBy).toBeUndefined();
    expect((await summary('default/other-node'))?.servedBy).toBeUndefined();
    expect((await summary('default/counter-01'))?.servedBy).toBe('built-in:virtualProtocol');
  });

  it('a desired value set through the API reaches the mapper as UpdateDevice with the whole device, and its reports follow', async () => {
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    await mapper.next('listening', (e) => e.event === 'listening');
    const from = mapper.events.length;
    const put = await agent.api('/api/v1/devices/default/thermo-1/twin/desired', { method: 'PUT', body: JSON.stringify({ setpoint: 25 }), headers: { 'content-type': 'application/json' } });
    expect(put.status).toBe(200);
    const update = await mapper.next('UpdateDevice', calledWith('UpdateDevice', 'thermo-1'), from);
    const sent = (update.request as { device: ReadableDevice }).device;
    expect(sent.spec.properties.map((p) => [p.name, p.desired.value])).toEqual([
      ['temperature', ''],
      ['setpoint', '25'],
    ]);
    expect(sent.spec.protocol.configData).toEqual({ ip: '10.0.0.1', port: 502, enabled: true });
    await waitFor('the reported setpoint', async () => (await twin('default/thermo-1')).setpoint?.actual?.value === '25');
  });

  it('devices and models added and removed by a profile reload: a model before its device, removed after it', async () => {
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    await mapper.next('listening', (e) => e.event === 'listening');
    let from = mapper.events.length;
    writeFileSync(join(profiles, 'thermo-2.yaml'), `${MODEL.replace('thermo-model', 'thermo-model-2')}---\n${device('thermo-2', 'thermo-model-2')}`);
    agent.agent.reload();
    await mapper.next('RegisterDevice thermo-2', calledWith('RegisterDevice', 'thermo-2'), from);
    const added = mapper.events.slice(from).filter((e) => e.event === 'call').map((e) => e.method);
    expect(added).toEqual(['CreateDeviceModel', 'RegisterDevice']);

    from = mapper.events.length;
    rmSync(join(profiles, 'thermo-2.yaml'));
    agent.agent.reload();
    await mapper.next('RemoveDeviceModel', calledWith('RemoveDeviceModel'), from);
    const removed = mapper.events.slice(from).filter((e) => e.event === 'call');
    expect(removed.map((e) => [e.method, e.request])).toEqual([
      ['RemoveDevice', { deviceName: 'thermo-2', deviceNamespace: 'default' }],
      ['RemoveDeviceModel', { modelName: 'thermo-model-2', modelNamespace: 'default' }],
    ]);
  });

  it('a mapper that stops: its devices go offline with the reason; a desired value set meanwhile reaches it when it registers again', async () => {
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    await mapper.next('listening', (e) => e.event === 'listening');
    await mapper.kill('SIGKILL');
    const offline = await waitFor('offline', async () => {
      const d = await summary('default/thermo-1');
      return d?.state === 'offline' && d;
    }, { timeoutMs: 15_000 });
    expect(offline.reason).toMatch(/DMI mapper test-mapper does not listen at .*mapper\.sock/);

    const put = await agent.api('/api/v1/devices/default/thermo-1/twin/desired', { method: 'PUT', body: JSON.stringify({ setpoint: 30 }), headers: { 'content-type': 'application/json' } });
    expect(put.status).toBe(200);
    mapper = startTestMapper({ agentSocket: socket, socket: mapperSocket, protocol: 'testdmi' });
    const registered = await mapper.next('registration', (e) => e.event === 'registered');
    expect(devicesIn(registered)[0]!.spec.properties[1]).toMatchObject({ name: 'setpoint', desired: { value: '30' } });
    await waitFor('state ok again', async () => (await summary('default/thermo-1'))?.state === 'ok');
  });

  it('a DMI mapper registering a protocol a built-in mapper serves takes its devices over', async () => {
    await waitFor('the built-in counter counting', async () => Number((await twin('default/counter-01')).count?.actual?.value) > 0);
    mapper = startTestMapper({ agentSocket: socket, socket: join(agent.dataDir, 'virtual.sock'), protocol: 'virtualProtocol', name: 'virtual-dmi' });
    const registered = await mapper.next('registration', (e) => e.event === 'registered');
    expect(devicesIn(registered).map((d) => d.name)).toEqual(['counter-01']);
    expect((await summary('default/counter-01'))?.servedBy).toBe('dmi:virtual-dmi');
    // The DMI mapper's reports now fill the twin.
    await mapper.next('a report', (e) => e.event === 'reported' && e.device === 'default/counter-01');
    const status = (await (await agent.api('/api/v1/dmi')).json()) as { socket: string; mappers: Array<{ name: string; protocol: string; address: string }> };
    expect(status.socket).toBe(socket);
    expect(status.mappers.map((m) => [m.protocol, m.name])).toEqual(
      expect.arrayContaining([
        ['testdmi', 'test-mapper'],
        ['virtualProtocol', 'virtual-dmi'],
      ]),
    );

    // Uninstalled for good: forgotten, the protocol goes back to the built-in mapper.
    await mapper.kill();
    expect((await agent.api('/api/v1/dmi/mappers/virtualProtocol', { method: 'DELETE' })).status).toBe(200);
    expect((await summary('default/counter-01'))?.servedBy).toBe('built-in:virtualProtocol');
    const before = Number((await twin('default/counter-01')).count?.actual?.value);
    await waitFor('the built-in counter counting again', async () => Number((await twin('default/counter-01')).count?.actual?.value) > before, { timeoutMs: 5000 });
    expect((await agent.api('/api/v1/dmi/mappers/virtualProtocol', { method: 'DELETE' })).status).toBe(404);
  });
});

describe('DMI across an agent killed with kill -9', () => {
  it('restarts on its stale socket; the mapper, which does not register again, is still known and still reached', async () => {
    const dir = tempDir('dmi-restart-');
    const profiles = join(dir, 'profiles');
    mkdirSync(profiles);
    writeFileSync(join(profiles, 'model.yaml'), MODEL);
    writeFileSync(join(profiles, 'thermo-1.yaml'), device('thermo-1'));
    const socket = join(dir, 'dmi.sock');
    const args = ['--data', join(dir, 'data'), '--profiles', profiles];
    const env = { EDGE_AGENT_DMI__SOCKET: socket };
    let agent = await spawnAgent(args, env);
    const mapper = startTestMapper({ agentSocket: socket, socket: join(dir, 'mapper.sock'), protocol: 'testdmi' });
    try {
      await mapper.next('listening', (e) => e.event === 'listening');
      agent.child.kill('SIGKILL');
      await agent.exited;
      expect(existsSync(socket)).toBe(true);
      const from = mapper.events.length;
      agent = await spawnAgent(args, env);
      // Its reports reach the new agent: the stale socket was replaced.
      await mapper.next('a report after the restart', (e) => e.event === 'reported', from);
      const put = await agent.api('/api/v1/devices/default/thermo-1/twin/desired', { method: 'PUT', body: JSON.stringify({ setpoint: 19 }), headers: { 'content-type': 'application/json' } });
      expect(put.status).toBe(200);
      const update = await mapper.next('UpdateDevice after the restart', calledWith('UpdateDevice', 'thermo-1'), from);
      expect((update.request as { device: ReadableDevice }).device.spec.properties[1]!.desired.value).toBe('19');
      expect(mapper.events.slice(from).some((e) => e.event === 'registered')).toBe(false);
    } finally {
      await mapper.kill();
      agent.child.kill('SIGTERM');
      await agent.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
