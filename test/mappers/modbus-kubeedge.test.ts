/**
 * The Modbus mapper read the way KubeEdge's modbus mappers read (`int`, `float`, `double` sized
 * by `limit`, numbers on bits, `serialName`, KubeEdge's own temperature sample) and what slow
 * or odd lines need (`delayMs`, `communicateMode: RTUoverTCP`, `writeMultiple`, 64-bit integers).
 * Real peers: pymodbus servers (test/fixtures/modbus/server.py) over TCP, RTU on a socat pty
 * pair, and RTU frames over TCP; the server's log of the requests it saw (time, function code)
 * shows what went on the wire. The mapper runs directly, except for the sample, which a whole
 * agent serves from its unchanged manifest.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { modbusMapper } from '../../mappers/modbus/mapper.js';
import { parseObject } from '../../src/devices/load.js';
import type { DeviceDetail } from '../../src/twin/routes.js';
import { createLogger } from '../../src/log.js';
import type { BoundProperty, DeviceConnection, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import { TransportPool } from '../../src/mapperhost/transports.js';
import { ROOT, startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { float32ToWords, float64ToWords, startModbusRtu, startModbusRtuOverTcp, startModbusTcp, type ModbusServer } from '../support/modbus.js';
import { waitFor } from '../support/wait.js';

interface Prop {
  name: string;
  type?: 'INT' | 'FLOAT' | 'DOUBLE' | 'STRING' | 'BOOLEAN';
  /** The visitor's configData, as a manifest gives it. */
  visitor: Record<string, unknown>;
}

function manifests(name: string, configData: Record<string, unknown>, props: Prop[]) {
  const { model } = parseObject({
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name, namespace: 'default' },
    spec: { protocol: 'modbus', properties: props.map((p) => ({ name: p.name, type: p.type ?? 'INT', accessMode: 'ReadWrite' })) },
  });
  const { device, errors } = parseObject({
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name, namespace: 'default' },
    spec: {
      deviceModelRef: { name },
      protocol: { protocolName: 'modbus', configData },
      properties: props.map((p) => ({ name: p.name, visitors: { protocolName: 'modbus', configData: p.visitor } })),
    },
  });
  if (!model || !device) throw new Error(errors.join('; '));
  return { device, model };
}

/** Devices opened through the mapper on one transport pool, closed after each test. */
const pool = new TransportPool();
const context: MapperContext = { log: createLogger('silent'), busUrl: '', transports: pool, push: () => undefined, lost: () => undefined };
const opened: DeviceConnection[] = [];

async function open(name: string, configData: Record<string, unknown>, props: Prop[]) {
  const { device, model } = manifests(name, configData, props);
  expect(modbusMapper.validate(device, model)).toEqual([]);
  const connection = await modbusMapper.connect(device, model, context);
  opened.push(connection);
  const bound = (p: string): BoundProperty => ({ name: p, visitor: device.properties.find((d) => d.name === p)!.visitor, model: model.properties.find((m) => m.name === p)! });
  return {
    connection,
    async readAll(): Promise<Record<string, PropertyValue | Error>> {
      const values = await connection.readMany!(props.map((p) => bound(p.name)));
      return Object.fromEntries(props.map((p, i) => [p.name, values[i]!]));
    },
    write: (p: string, value: PropertyValue) => connection.write!(bound(p), value),
  };
}

afterEach(async () => {
  for (const connection of opened.splice(0)) await connection.close();
});

const tcp = (port: number, extra: Record<string, unknown> = {}) => ({ communicateMode: 'TCP', ip: '127.0.0.1', port, slaveID: 1, ...extra });
const hr = (offset: number, dataType: string, limit?: number, extra: Record<string, unknown> = {}) => ({ register: 'HoldingRegister', offset, dataType, ...(limit ? { limit } : {}), ...extra });

/** A 32-bit counter, 0x12345678, as two registers high word first. */
const COUNTER = [0x1234, 0x5678];

// ---- widths and types as upstream reads them ------------------------------------------------

describe('upstream widths and types over TCP', () => {
  let server: ModbusServer & { port: number };
  const servers: ModbusServer[] = [];

  beforeAll(async () => {
    server = await startModbusTcp({
      slaves: {
        1: {
          hr: {
            0: COUNTER,
            2: 0xfffb,
            3: [0x0001, 0x0002, 0x0003, 0x0004],
            7: 235,
            8: float32ToWords(21.5),
            10: float64ToWords(1234.5678),
          },
          co: { 1: 1 },
          di: { 2: 1 },
        },
      },
    });
    servers.push(server);
  });

  afterAll(async () => {
    await pool.closeAll();
    for (const s of servers) await s.stop();
  });

  it('`int` spans 1, 2 or 4 registers by `limit`, unsigned; `float` limit 1 is a register × scale, limit 2 float32; `double` 4 registers', async () => {
    const device = await open('widths', tcp(server.port), [
      { name: 'counter', visitor: hr(0, 'int', 2) },
      { name: 'word', visitor: hr(2, 'int', 1) },
      { name: 'wide', visitor: hr(3, 'int', 4) },
      { name: 'temperature', type: 'FLOAT', visitor: hr(7, 'float', 1, { scale: 0.1 }) },
      { name: 'float32', type: 'FLOAT', visitor: hr(8, 'float', 2) },
      { name: 'double', type: 'DOUBLE', visitor: hr(10, 'double', 4) },
    ]);
    const values = await device.readAll();
    expect(values).toMatchObject({ counter: 305419896, word: 65531, wide: 0x0001000200030004, float32: 21.5 });
    expect(values.temperature).toBeCloseTo(23.5, 9);
    expect(values.double).toBeCloseTo(1234.5678, 9);
  });

  it('numeric types on coils and discrete inputs read the bit as 0 or 1; a number written to a coil sets it', async () => {
    const device = await open('bits', tcp(server.port), [
      { name: 'switch', visitor: { register: 'CoilRegister', offset: 1, limit: 1, dataType: 'int' } },
      { name: 'off', visitor: { register: 'CoilRegister', offset: 0, limit: 1, dataType: 'int' } },
      { name: 'input', type: 'FLOAT', visitor: { register: 'DiscreteInputRegister', offset: 2, limit: 1, dataType: 'float' } },
    ]);
    expect(await device.readAll()).toEqual({ switch: 1, off: 0, input: 1 });
    await device.write('off', '1');
    expect(await server.get(1, 'co', 0)).toEqual([1]);
    expect((await device.readAll()).off).toBe(1);
  });

  it('int64 and uint64 round-trip, exact past 2^53', async () => {
    const device = await open('wide-ints', tcp(server.port), [
      { name: 'signed', visitor: hr(20, 'int64') },
      { name: 'unsigned', visitor: hr(24, 'uint64', 4, { isRegisterSwap: true }) },
      { name: 'small', visitor: hr(28, 'int64') },
    ]);
    await device.write('signed', '-1234567890123456789');
    await device.write('unsigned', '18446744073709551615');
    await device.write('small', -42);
    expect(await server.get(1, 'hr', 20, 4)).toEqual([0xeedd, 0xef0b, 0x8216, 0x7eeb]);
    expect(await server.get(1, 'hr', 28, 4)).toEqual([0xffff, 0xffff, 0xffff, 0xffd6]);
    expect(await device.readAll()).toEqual({ signed: '-1234567890123456789', unsigned: '18446744073709551615', small: -42 });
  });

  it('`writeMultiple: true` writes one register with FC16; without it, FC06', async () => {
    const plain = await open('fc06', tcp(server.port), [{ name: 'setpoint', visitor: hr(40, 'int16') }]);
    const forced = await open('fc16', tcp(server.port, { writeMultiple: true }), [{ name: 'setpoint', visitor: hr(41, 'int16') }]);
    await plain.write('setpoint', 7);
    await forced.write('setpoint', 8);
    const writes = (await server.frames(1)).filter((f) => f.address === 40 || f.address === 41).map((f) => [f.address, f.fc]);
    expect(writes).toEqual([
      [40, 6],
      [41, 16],
    ]);
    expect(await server.get(1, 'hr', 40, 2)).toEqual([7, 8]);
  });

  it('validate names a width upstream does not have, at its place in the manifest', () => {
    const { device, model } = manifests('bad-widths', tcp(server.port), [
      { name: 'three', visitor: hr(0, 'int', 3) },
      { name: 'short-double', type: 'DOUBLE', visitor: hr(0, 'double', 2) },
      { name: 'text-bit', type: 'STRING', visitor: { register: 'CoilRegister', offset: 0, dataType: 'string' } },
    ]);
    expect(modbusMapper.validate(device, model)).toEqual([
      'spec.properties.0.visitors.configData.limit: int spans 1, 2 or 4 registers (16, 32 or 64 bits)',
      'spec.properties.1.visitors.configData.limit: double spans 4 registers',
      'spec.properties.2.visitors.configData.dataType: CoilRegister holds bits: boolean or a number (0/1)',
    ]);
  });

  it('a slave that needs quiet time between frames: refused (busy) without `delayMs`, served with it, every gap at least the delay', async () => {
    const slow = { 1: { hr: { 0: COUNTER, 50: 5, 100: 10 }, minGapMs: 100 } };
    // Three properties far apart: three requests per cycle, back to back unless delayed.
    const props: Prop[] = [
      { name: 'counter', visitor: hr(0, 'int', 2) },
      { name: 'middle', visitor: hr(50, 'uint16') },
      { name: 'last', visitor: hr(100, 'uint16') },
    ];
    const hasty = await startModbusTcp({ slaves: slow });
    servers.push(hasty);
    const refused = await (await open('hasty', tcp(hasty.port), props)).readAll();
    expect(String(refused.middle)).toMatch(/exception 6/);

    const patient = await startModbusTcp({ slaves: slow });
    servers.push(patient);
    const device = await open('patient', tcp(patient.port, { delayMs: 120 }), props);
    for (let i = 0; i < 2; i++) expect(await device.readAll()).toEqual({ counter: 305419896, middle: 5, last: 10 });
    const times = (await patient.frames(1)).map((f) => f.ms);
    expect(times).toHaveLength(6);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(120);
  });
});

// ---- RTU: upstream serial settings, and RTU frames over TCP -----------------------------------

describe('RTU lines', () => {
  const servers: ModbusServer[] = [];

  afterAll(async () => {
    await pool.closeAll();
    for (const s of servers) await s.stop();
  });

  it('an upstream v1beta1 RTU device (`serialName`, `rs485Enabled`) on a socat pty pair, with `delayMs` kept between frames', async () => {
    const server = await startModbusRtu({ slaves: { 1: { hr: { 0: COUNTER, 60: 6 }, minGapMs: 20 } } });
    servers.push(server);
    const config = { communicateMode: 'RTU', serialName: server.devicePath, rs485Enabled: false, baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, slaveID: 1, delayMs: 25 };
    const device = await open('rtu-upstream', config, [
      { name: 'counter', visitor: hr(0, 'int', 2) },
      { name: 'far', visitor: hr(60, 'int', 1) },
    ]);
    expect(await device.readAll()).toEqual({ counter: 305419896, far: 6 });
    const [first, second] = (await server.frames(1)).map((f) => f.ms);
    expect(second! - first!).toBeGreaterThanOrEqual(25);
  });

  it('`communicateMode: RTUoverTCP` speaks RTU frames over a TCP socket (pymodbus with the RTU framer on TCP)', async () => {
    const server = await startModbusRtuOverTcp({ slaves: { 1: { hr: { 0: COUNTER } }, 2: { hr: { 0: 22 } } } });
    servers.push(server);
    const one = await open('rtu-tcp-1', { communicateMode: 'RTUoverTCP', ip: '127.0.0.1', port: server.port, slaveID: 1 }, [{ name: 'counter', visitor: hr(0, 'int', 2) }]);
    const two = await open('rtu-tcp-2', { communicateMode: 'RTUoverTCP', ip: '127.0.0.1', port: server.port, slaveID: 2 }, [{ name: 'value', visitor: hr(0, 'int', 1) }]);
    expect(await one.readAll()).toEqual({ counter: 305419896 });
    expect(await two.readAll()).toEqual({ value: 22 });
    await two.write('value', 23);
    expect(await server.get(2, 'hr', 0)).toEqual([23]);
  });
});

// ---- KubeEdge's temperature sample, served by the agent ----------------------------------------

const SAMPLES = join(ROOT, 'test/fixtures/kubeedge-samples');
const SAMPLE = 'kubeedge__examples__temperature-sensor-demo__crds__temperature-instance.yaml';
const SAMPLE_MODEL = 'kubeedge__examples__temperature-sensor-demo__crds__temperature-model.yaml';

describe("KubeEdge's temperature-sensor demo device, its manifest unchanged but for the address", () => {
  let server: ModbusServer & { port: number };
  let agent: TestAgent;
  let dir: string;

  beforeAll(async () => {
    server = await startModbusTcp({ slaves: { 1: { hr: { 0: 235 }, co: { 0: 0 } } } });
    dir = tempDir('modbus-sample-');
    const text = readFileSync(join(SAMPLES, SAMPLE), 'utf8');
    const pointed = text.replace('port: "5502"', `port: "${server.port}"`).replace('ip: "10.244.1.13"', 'ip: "127.0.0.1"');
    expect(pointed).not.toBe(text);
    writeFileSync(join(dir, SAMPLE), pointed);
    writeFileSync(join(dir, SAMPLE_MODEL), readFileSync(join(SAMPLES, SAMPLE_MODEL)));
    // The sample's node, so the agent serves it as EdgeCore on that node would.
    agent = await startTestAgent({ profiles: [dir], config: { node: 'kind-worker' } });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the one-register float × 0.1, writes its desired switch value to the coil, and is online', async () => {
    const detail = await waitFor(
      'temperature-instance to report both properties',
      async () => {
        const response = await agent.api('/api/v1/devices/default/temperature-instance');
        const d = (await response.json()) as DeviceDetail;
        return d.twin.temperature?.actual?.value === '23.5' && d.twin['temperature-switch']?.actual?.value === '1' ? d : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(detail.state).toBe('online');
    expect(await server.get(1, 'co', 0)).toEqual([1]);
  });
});
