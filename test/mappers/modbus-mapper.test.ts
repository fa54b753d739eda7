/**
 * The modbus mapper (`mappers/modbus`, protocol `modbus`) against real peers: a pymodbus server
 * as the device over TCP and over RTU on a socat pty pair, and mbpoll as an independent master
 * that checks what the agent wrote. Devices are KubeEdge manifests in a temp dir; the agent
 * runs in-process and is observed through its HTTP API, and its TCP connections through `ss`.
 * Waits poll with deadlines.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modbusMapper } from '../../mappers/modbus/mapper.js';
import { createLogger } from '../../src/log.js';
import type { BoundProperty, MapperContext } from '../../src/mapperhost/contract.js';
import { TransportPool } from '../../src/mapperhost/transports.js';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import {
  float32ToWords,
  float64ToWords,
  int16ToWord,
  int32ToWords,
  mbpoll,
  mbpollTcpArgs,
  mbpollValues,
  startModbusRtu,
  startModbusTcp,
  stringToWords,
  uint32ToWords,
  type ModbusRtuServer,
  type ModbusTcpServer,
} from '../support/modbus.js';
import { waitFor } from '../support/wait.js';
import type { DeviceDetail } from '../../src/twin/routes.js';

// ---- manifests ---------------------------------------------------------------------------

type ModelType = 'FLOAT' | 'INT' | 'BOOLEAN' | 'STRING';
type Register = 'HoldingRegister' | 'InputRegister' | 'CoilRegister' | 'DiscreteInputRegister';

interface Prop {
  name: string;
  type: ModelType;
  access?: 'ReadWrite' | 'ReadOnly';
  register: Register;
  offset: number;
  limit?: number;
  dataType: string;
  scale?: number;
  isSwap?: boolean;
  isRegisterSwap?: boolean;
  min?: number;
  max?: number;
}

function model(name: string, props: Prop[]): Record<string, unknown> {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name, namespace: 'default' },
    spec: { protocol: 'modbus', properties: props.map((p) => ({ name: p.name, type: p.type, accessMode: p.access ?? 'ReadOnly' })) },
  };
}

function device(name: string, modelName: string, configData: Record<string, unknown>, props: Prop[]): Record<string, unknown> {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name, namespace: 'default' },
    spec: {
      deviceModelRef: { name: modelName },
      protocol: { protocolName: 'modbus', configData },
      properties: props.map((p) => ({
        name: p.name,
        collectCycle: 500,
        reportCycle: 500,
        visitors: {
          protocolName: 'modbus',
          configData: {
            register: p.register,
            offset: p.offset,
            limit: p.limit ?? ({ int16: 1, uint16: 1, boolean: 1, int32: 2, uint32: 2, float32: 2, float64: 4 } as Record<string, number>)[p.dataType] ?? 1,
            scale: p.scale ?? 1,
            isSwap: p.isSwap ?? false,
            isRegisterSwap: p.isRegisterSwap ?? false,
            dataType: p.dataType,
            ...(p.min !== undefined ? { min: p.min } : {}),
            ...(p.max !== undefined ? { max: p.max } : {}),
          },
        },
      })),
    },
  };
}

function tcpConfig(port: number, slaveID = 1): Record<string, unknown> {
  return { communicateMode: 'TCP', ip: '127.0.0.1', port: String(port), slaveID };
}

/** Writes the documents as one multi-document YAML file in a new temp dir; returns the dir. */
function profiles(docs: Array<Record<string, unknown>>): string {
  const dir = tempDir('modbus-profiles-');
  writeFileSync(join(dir, 'devices.yaml'), docs.map((d) => yaml.dump(d)).join('---\n'));
  return dir;
}

// ---- API --------------------------------------------------------------------------------

async function detail(agent: TestAgent, id: string): Promise<DeviceDetail> {
  const response = await agent.api(`/api/v1/devices/${id}`);
  if (response.status !== 200) throw new Error(`GET ${id}: ${response.status}`);
  return (await response.json()) as DeviceDetail;
}

async function reported(agent: TestAgent, id: string): Promise<Record<string, string>> {
  const d = await detail(agent, id);
  return Object.fromEntries(Object.entries(d.twin).flatMap(([k, t]) => (t.actual?.value !== undefined ? [[k, t.actual.value]] : [])));
}

async function setDesired(agent: TestAgent, id: string, values: Record<string, string>): Promise<void> {
  const response = await agent.api(`/api/v1/devices/${id}/twin/desired`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(values),
  });
  if (response.status !== 200) throw new Error(`PUT desired ${id}: ${response.status} ${await response.text()}`);
}

/** Waits until every given property reports the given value; returns all reported values. */
function waitReported(agent: TestAgent, id: string, expected: Record<string, string>, timeoutMs = 10_000): Promise<Record<string, string>> {
  let last: Record<string, string> = {};
  return waitFor(
    `${id} to report ${JSON.stringify(expected)}`,
    async () => {
      last = await reported(agent, id);
      return Object.entries(expected).every(([k, v]) => last[k] === v) ? last : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last reported ${JSON.stringify(last)}`);
  });
}

function waitState(agent: TestAgent, id: string, states: string[], timeoutMs = 15_000): Promise<string> {
  let last = '';
  return waitFor(
    `${id} to be ${states.join(' or ')}`,
    async () => {
      last = (await detail(agent, id)).state;
      return states.includes(last) ? last : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last state ${last}`);
  });
}

// ---- TCP: data types, writes, v1alpha2, bad visitors ---------------------------------------

const READS: Prop[] = [
  { name: 'temp', type: 'FLOAT', register: 'HoldingRegister', offset: 0, dataType: 'float32' },
  { name: 'temp-swapped', type: 'FLOAT', register: 'HoldingRegister', offset: 2, dataType: 'float32', isRegisterSwap: true },
  { name: 'i16', type: 'INT', register: 'HoldingRegister', offset: 4, dataType: 'int16' },
  { name: 'u16', type: 'INT', register: 'HoldingRegister', offset: 5, dataType: 'uint16' },
  { name: 'i32', type: 'INT', register: 'HoldingRegister', offset: 6, dataType: 'int32' },
  { name: 'u32', type: 'INT', register: 'HoldingRegister', offset: 8, dataType: 'uint32' },
  { name: 'f64', type: 'FLOAT', register: 'HoldingRegister', offset: 10, dataType: 'float64' },
  { name: 'scaled', type: 'FLOAT', register: 'HoldingRegister', offset: 14, dataType: 'int16', scale: 0.1 },
  { name: 'label', type: 'STRING', register: 'HoldingRegister', offset: 15, limit: 3, dataType: 'string' },
  { name: 'byteswapped', type: 'INT', register: 'HoldingRegister', offset: 20, dataType: 'uint16', isSwap: true },
  { name: 'i32-swapped', type: 'INT', register: 'HoldingRegister', offset: 22, dataType: 'int32', isRegisterSwap: true },
  { name: 'input', type: 'INT', register: 'InputRegister', offset: 10, dataType: 'uint16' },
  { name: 'input-float', type: 'FLOAT', register: 'InputRegister', offset: 12, dataType: 'float32' },
  { name: 'coil', type: 'BOOLEAN', register: 'CoilRegister', offset: 3, dataType: 'boolean' },
  { name: 'coil-off', type: 'BOOLEAN', register: 'CoilRegister', offset: 4, dataType: 'boolean' },
  { name: 'discrete', type: 'BOOLEAN', register: 'DiscreteInputRegister', offset: 2, dataType: 'boolean' },
  { name: 'discrete-off', type: 'BOOLEAN', register: 'DiscreteInputRegister', offset: 0, dataType: 'boolean' },
];

const WRITES: Prop[] = [
  { name: 'setpoint', type: 'INT', access: 'ReadWrite', register: 'HoldingRegister', offset: 30, dataType: 'int16' },
  { name: 'target', type: 'FLOAT', access: 'ReadWrite', register: 'HoldingRegister', offset: 32, dataType: 'float32' },
  { name: 'target-swapped', type: 'FLOAT', access: 'ReadWrite', register: 'HoldingRegister', offset: 34, dataType: 'float32', isRegisterSwap: true },
  { name: 'level', type: 'FLOAT', access: 'ReadWrite', register: 'HoldingRegister', offset: 36, dataType: 'int16', scale: 0.1 },
  { name: 'counter', type: 'INT', access: 'ReadWrite', register: 'HoldingRegister', offset: 38, dataType: 'int32' },
  { name: 'relay', type: 'BOOLEAN', access: 'ReadWrite', register: 'CoilRegister', offset: 5, dataType: 'boolean' },
];

const BAD: Prop[] = [
  { name: 'far', type: 'INT', register: 'HoldingRegister', offset: 70000, dataType: 'int16' },
  { name: 'weird', type: 'INT', register: 'HoldingRegister', offset: 0, dataType: 'decimal128' },
];

describe('modbus mapper over TCP (pymodbus server, mbpoll cross-checks)', () => {
  let server: ModbusTcpServer;
  let agent: TestAgent;
  let dir: string;

  beforeAll(async () => {
    server = await startModbusTcp({
      slaves: {
        1: {
          hr: {
            0: float32ToWords(21.5),
            2: float32ToWords(-3.25, { wordSwap: true }),
            4: int16ToWord(-5),
            5: 65000,
            6: int32ToWords(-123456),
            8: uint32ToWords(3_000_000_000),
            10: float64ToWords(1234.5678),
            14: 235,
            15: stringToWords('EDGE-1', 3),
            20: 0x3412,
            22: int32ToWords(70000, { wordSwap: true }),
            30: 0,
          },
          ir: { 10: 1234, 12: float32ToWords(0.75) },
          co: { 3: 1 },
          di: { 2: 1 },
          illegal: { hr: [[100, 110]] },
        },
        2: { hr: { 0: 4242 } },
      },
    });
    const alpha2Model = {
      apiVersion: 'devices.kubeedge.io/v1alpha2',
      kind: 'DeviceModel',
      metadata: { name: 'modbus-alpha-model', namespace: 'default' },
      spec: { properties: [{ name: 'x', type: { int: { accessMode: 'ReadOnly' } } }] },
    };
    const alpha2Device = {
      apiVersion: 'devices.kubeedge.io/v1alpha2',
      kind: 'Device',
      metadata: { name: 'modbus-alpha-01', namespace: 'default' },
      spec: {
        deviceModelRef: { name: 'modbus-alpha-model' },
        protocol: { modbus: { slaveID: 2 }, common: { tcp: { ip: '127.0.0.1', port: server.port } } },
        propertyVisitors: [
          { propertyName: 'x', collectCycle: 500, modbus: { register: 'HoldingRegister', offset: 0, limit: 1, scale: 1, isSwap: false, isRegisterSwap: false } },
        ],
      },
    };
    const partial: Prop[] = [
      { name: 'good', type: 'INT', register: 'HoldingRegister', offset: 4, dataType: 'int16' },
      { name: 'illegal', type: 'INT', register: 'HoldingRegister', offset: 104, dataType: 'int16' },
    ];
    dir = profiles([
      model('modbus-reads', READS),
      device('modbus-reads-01', 'modbus-reads', tcpConfig(server.port), READS),
      model('modbus-writes', WRITES),
      device('modbus-writes-01', 'modbus-writes', tcpConfig(server.port), WRITES),
      alpha2Model,
      alpha2Device,
      model('modbus-bad', BAD),
      device('modbus-bad-01', 'modbus-bad', tcpConfig(server.port), BAD),
      model('modbus-partial', partial),
      device('modbus-partial-01', 'modbus-partial', tcpConfig(server.port), partial),
    ]);
    agent = await startTestAgent({ profiles: [dir] });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('loads the manifests, reports the bad visitors of modbus-bad-01 only, and serves every device with the modbus mapper', () => {
    expect(agent.agent.catalog.current.errors.map((e) => `${e.path}: ${e.reason}`)).toEqual([
      'spec.properties.0.visitors.configData.offset: expected <=65535, received 70000',
      'spec.properties.1.visitors.configData.dataType: must be int, float, double, int16, uint16, int32, uint32, int64, uint64, float32, float64, boolean or string',
    ]);
    expect([...agent.agent.catalog.current.devices.keys()]).toEqual(
      expect.arrayContaining(['default/modbus-reads-01', 'default/modbus-writes-01', 'default/modbus-alpha-01', 'default/modbus-bad-01', 'default/modbus-partial-01']),
    );
  });

  it('reads every register type and data type into the twin, converted and scaled', async () => {
    const values = await waitReported(agent, 'default/modbus-reads-01', {
      temp: '21.5',
      'temp-swapped': '-3.25',
      i16: '-5',
      u16: '65000',
      i32: '-123456',
      u32: '3000000000',
      scaled: '23.5',
      label: 'EDGE-1',
      byteswapped: '4660',
      'i32-swapped': '70000',
      input: '1234',
      'input-float': '0.75',
      coil: 'true',
      'coil-off': 'false',
      discrete: 'true',
      'discrete-off': 'false',
    });
    expect(Number(values.f64)).toBeCloseTo(1234.5678, 4);
    expect((await detail(agent, 'default/modbus-reads-01')).state).toBe('online');
  });

  it('follows changes on the device', async () => {
    await waitReported(agent, 'default/modbus-reads-01', { input: '1234', coil: 'true' });
    await server.set(1, 'ir', 10, [4321]);
    await server.set(1, 'co', 3, [0]);
    await server.set(1, 'hr', 0, float32ToWords(-0.5));
    await waitReported(agent, 'default/modbus-reads-01', { input: '4321', coil: 'false', temp: '-0.5' });
  });

  it('writes desired values to holding registers and coils; mbpoll reads them back from the server', async () => {
    await setDesired(agent, 'default/modbus-writes-01', {
      setpoint: '-42',
      target: '12.25',
      'target-swapped': '-7.5',
      level: '12.3',
      counter: '100000',
      relay: 'true',
    });
    await waitReported(agent, 'default/modbus-writes-01', {
      setpoint: '-42',
      target: '12.25',
      'target-swapped': '-7.5',
      level: '12.3',
      counter: '100000',
      relay: 'true',
    });
    // mbpoll, an independent master, reads what landed in the server.
    const words = mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 30, count: 10 })));
    expect(words.get(30)).toBe(String(int16ToWord(-42)));
    expect([words.get(32), words.get(33)]).toEqual(float32ToWords(12.25).map(String));
    expect([words.get(34), words.get(35)]).toEqual(float32ToWords(-7.5, { wordSwap: true }).map(String));
    expect(words.get(36)).toBe('123');
    expect([words.get(38), words.get(39)]).toEqual(int32ToWords(100000).map(String));
    // mbpoll's 32-bit types take the low word first unless -B.
    const float = mbpollValues(await mbpoll([...mbpollTcpArgs(server.port, { ref: 32, type: '4:float' }).slice(0, -1), '-B', '127.0.0.1']));
    expect(float.get(32)).toBe('12.25');
    const swapped = mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 34, type: '4:float' })));
    expect(swapped.get(34)).toBe('-7.5');
    expect(mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 5, type: '0' }))).get(5)).toBe('1');
    expect((await detail(agent, 'default/modbus-writes-01')).delta).toEqual({});

    await setDesired(agent, 'default/modbus-writes-01', { relay: 'false' });
    await waitReported(agent, 'default/modbus-writes-01', { relay: 'false' });
    expect(await server.get(1, 'co', 5)).toEqual([0]);
  });

  it('reads a v1alpha2 device (protocol.modbus + common.tcp, propertyVisitors) on another slave id', async () => {
    await waitReported(agent, 'default/modbus-alpha-01', { x: '4242' });
    expect((await detail(agent, 'default/modbus-alpha-01')).state).toBe('online');
  });

  it('an impossible visitor (offset 70000, unknown dataType) leaves its device unhealthy or offline, never reported', async () => {
    await waitState(agent, 'default/modbus-bad-01', ['unhealthy', 'offline']);
    expect(await reported(agent, 'default/modbus-bad-01')).toEqual({});
    // Another device on the same agent and the same server is not affected.
    await waitReported(agent, 'default/modbus-alpha-01', { x: '4242' });
    await server.set(2, 'hr', 0, [4243]);
    await waitReported(agent, 'default/modbus-alpha-01', { x: '4243' });
    expect((await detail(agent, 'default/modbus-alpha-01')).state).toBe('online');
    expect((await detail(agent, 'default/modbus-bad-01')).state).not.toBe('online');
  });

  it('says why in the words validate uses when the manifests load: each field at its place in the manifest', async () => {
    const { devices, models } = agent.agent.catalog.current;
    const bad = devices.get('default/modbus-bad-01')!;
    const errors = modbusMapper.validate(bad, models.get(bad.modelId)!);
    expect(errors).toEqual([
      'spec.properties.0.visitors.configData.offset: expected <=65535, received 70000',
      'spec.properties.1.visitors.configData.dataType: must be int, float, double, int16, uint16, int32, uint32, int64, uint64, float32, float64, boolean or string',
    ]);
    await waitState(agent, 'default/modbus-bad-01', ['unhealthy']);
    expect((await detail(agent, 'default/modbus-bad-01')).reason).toBe(errors.join('; '));
  });

  it('devices behind one endpoint share its line: opened for the first, closed after the last lets go', async () => {
    const pool = new TransportPool();
    const events: string[] = [];
    // What the mapper asks of the pool, recorded; the line itself stays the mapper's.
    const acquire = pool.acquire.bind(pool);
    pool.acquire = (key, open, close) =>
      acquire(
        key,
        () => (events.push(`open ${key}`), open()),
        (line) => (events.push(`close ${key}`), close(line)),
      );
    const context: MapperContext = { log: createLogger('silent'), busUrl: '', transports: pool, push: () => undefined, lost: () => undefined };
    const { devices, models } = agent.agent.catalog.current;
    const open = async (id: string) => {
      const device = devices.get(id)!;
      const model = models.get(device.modelId)!;
      const connection = await modbusMapper.connect(device, model, context);
      const property = (name: string): BoundProperty => ({ name, visitor: device.properties.find((p) => p.name === name)!.visitor, model: model.properties.find((p) => p.name === name)! });
      return { connection, property };
    };
    const line = `modbus:tcp://127.0.0.1:${server.port}`;
    const alpha = await open('default/modbus-alpha-01');
    const partial = await open('default/modbus-partial-01');
    expect(events).toEqual([`open ${line}`]);
    expect(await alpha.connection.read(alpha.property('x'))).toEqual(expect.any(Number));
    await alpha.connection.close();
    expect(events).toEqual([`open ${line}`]);
    // The other slave is still served over the line.
    expect(await partial.connection.read(partial.property('good'))).toBe(-5);
    await partial.connection.close();
    expect(events).toEqual([`open ${line}`, `close ${line}`]);
  });

  it('an exception answer (illegal data address) fails only that property, not its neighbours', async () => {
    await waitReported(agent, 'default/modbus-partial-01', { good: '-5' });
    const d = await detail(agent, 'default/modbus-partial-01');
    expect(d.state).toBe('online');
    expect(d.twin.illegal?.actual).toBeUndefined();
  });
});

// ---- TCP: the device goes away and comes back -----------------------------------------------

describe('modbus mapper when the TCP device stops and restarts on the same port', () => {
  let server: ModbusTcpServer | undefined;
  let agent: TestAgent;
  let dir: string;
  const props: Prop[] = [{ name: 'value', type: 'INT', register: 'InputRegister', offset: 1, dataType: 'uint16' }];

  beforeAll(async () => {
    server = await startModbusTcp({ slaves: { 1: { ir: { 1: 111 } }, 3: { silent: true } } });
    dir = profiles([
      model('modbus-restart', props),
      device('modbus-restart-01', 'modbus-restart', tcpConfig(server.port), props),
      device('modbus-silent-01', 'modbus-restart', tcpConfig(server.port, 3), props),
    ]);
    agent = await startTestAgent({ profiles: [dir] });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a slave that never answers goes offline; another slave on the same server stays online', async () => {
    await waitState(agent, 'default/modbus-silent-01', ['offline'], 20_000);
    expect(await reported(agent, 'default/modbus-silent-01')).toEqual({});
    await waitReported(agent, 'default/modbus-restart-01', { value: '111' });
    await server!.set(1, 'ir', 1, [112]);
    await waitReported(agent, 'default/modbus-restart-01', { value: '112' });
    expect((await detail(agent, 'default/modbus-restart-01')).state).toBe('online');
    await server!.set(1, 'ir', 1, [111]);
  });

  it('goes offline while the server is down, then online again with fresh values', async () => {
    await waitReported(agent, 'default/modbus-restart-01', { value: '111' });
    await waitState(agent, 'default/modbus-restart-01', ['online']);
    const port = server!.port;
    await server!.stop();
    server = undefined;
    await waitState(agent, 'default/modbus-restart-01', ['offline', 'unhealthy'], 20_000);
    server = await startModbusTcp({ port, slaves: { 1: { ir: { 1: 222 } }, 3: { silent: true } } });
    // The mapper reconnects on its own (backoff up to a few seconds).
    await waitReported(agent, 'default/modbus-restart-01', { value: '222' }, 30_000);
    await waitState(agent, 'default/modbus-restart-01', ['online']);
  });
});

// ---- The line an agent opens: shared, and closed with the agent --------------------------

/** This process's established TCP connections to 127.0.0.1:port, as `ss` lists them. */
function connectionsTo(port: number): number {
  const sockets = execFileSync('ss', ['-Htnp', 'state', 'established', 'dst', `127.0.0.1:${port}`], { encoding: 'utf8' });
  return sockets.split('\n').filter((line) => line.includes(`pid=${process.pid},`)).length;
}

describe('the modbus line of an agent', () => {
  let server: ModbusTcpServer;
  let agent: TestAgent | undefined;
  let dir: string;
  const props: Prop[] = [{ name: 'value', type: 'INT', register: 'InputRegister', offset: 1, dataType: 'uint16' }];

  beforeAll(async () => {
    server = await startModbusTcp({ slaves: { 1: { ir: { 1: 11 } }, 2: { ir: { 1: 22 } } } });
    dir = profiles([
      model('modbus-shared', props),
      device('modbus-shared-1', 'modbus-shared', tcpConfig(server.port, 1), props),
      device('modbus-shared-2', 'modbus-shared', tcpConfig(server.port, 2), props),
    ]);
    agent = await startTestAgent({ profiles: [dir] });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is one TCP connection for the slaves behind one endpoint, closed when the agent stops', async () => {
    await waitReported(agent!, 'default/modbus-shared-1', { value: '11' });
    await waitReported(agent!, 'default/modbus-shared-2', { value: '22' });
    expect(connectionsTo(server.port)).toBe(1);
    const stopping = agent!;
    agent = undefined;
    await stopping.stop();
    await waitFor('the line closed', () => connectionsTo(server.port) === 0, { timeoutMs: 2000 });
  });
});

// ---- RTU over a socat pty pair -------------------------------------------------------------

describe('modbus mapper over RTU (pymodbus on a socat pty pair)', () => {
  let server: ModbusRtuServer;
  let agent: TestAgent;
  let dir: string;
  const props: Prop[] = [
    { name: 'temp', type: 'FLOAT', register: 'HoldingRegister', offset: 0, dataType: 'float32' },
    { name: 'coil', type: 'BOOLEAN', register: 'CoilRegister', offset: 3, dataType: 'boolean' },
    { name: 'setpoint', type: 'INT', access: 'ReadWrite', register: 'HoldingRegister', offset: 10, dataType: 'int16' },
  ];

  beforeAll(async () => {
    server = await startModbusRtu({ slaves: { 1: { hr: { 0: float32ToWords(21.5) }, co: { 3: 1 } } } });
    const config = { communicateMode: 'RTU', serialPort: server.devicePath, baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, slaveID: 1 };
    dir = profiles([model('modbus-rtu', props), device('modbus-rtu-01', 'modbus-rtu', config, props)]);
    agent = await startTestAgent({ profiles: [dir] });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads registers and coils over the serial line', async () => {
    await waitReported(agent, 'default/modbus-rtu-01', { temp: '21.5', coil: 'true' });
    expect((await detail(agent, 'default/modbus-rtu-01')).state).toBe('online');
  });

  it('writes a desired value over the serial line', async () => {
    await setDesired(agent, 'default/modbus-rtu-01', { setpoint: '77' });
    await waitReported(agent, 'default/modbus-rtu-01', { setpoint: '77' });
    // The pty is the agent's (a second master on the same line would collide): check the store.
    expect(await server.get(1, 'hr', 10)).toEqual([77]);
  });
});
