/**
 * Holes in a register map (`mappers/modbus/plan.ts`, `gaps.ts`, `readMany`): a pymodbus server
 * (test/fixtures/modbus/server.py) with two slaves on one TCP line, slave 1 answering exceptions
 * 2, 3 and 4 on some addresses, slave 2 without holes. The mapper runs directly, and the
 * requests it puts on the line are counted per slave at the line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modbusMapper } from '../../mappers/modbus/mapper.js';
import type { ModbusLine } from '../../mappers/modbus/line.js';
import { parseObject } from '../../src/devices/load.js';
import { createLogger } from '../../src/log.js';
import type { BoundProperty, DeviceConnection, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import { TransportPool } from '../../src/mapperhost/transports.js';
import { startModbusTcp, type ModbusTcpServer } from '../support/modbus.js';

const PROPS: Array<{ name: string; register: 'HoldingRegister' | 'InputRegister'; offset: number }> = [
  { name: 'a', register: 'HoldingRegister', offset: 0 },
  { name: 'b', register: 'HoldingRegister', offset: 1 },
  { name: 'c', register: 'HoldingRegister', offset: 2 },
  // 3: an unused register; slave 1 answers exception 2 for it
  { name: 'd', register: 'HoldingRegister', offset: 4 },
  { name: 'e', register: 'HoldingRegister', offset: 5 },
  { name: 'f', register: 'HoldingRegister', offset: 10 }, // slave 1: exception 3 on its own register
  { name: 'g', register: 'HoldingRegister', offset: 11 },
  { name: 'h', register: 'HoldingRegister', offset: 12 },
  { name: 'p', register: 'InputRegister', offset: 5 },
  // 6: unused; slave 1 answers exception 4 for it
  { name: 'q', register: 'InputRegister', offset: 7 },
];
/** Requests per cycle when no register raises an exception: one per register type. */
const WITHOUT_HOLES = 2;

function manifests(slaveID: number, port: number) {
  const modelDoc = {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name: 'gaps', namespace: 'default' },
    spec: { protocol: 'modbus', properties: PROPS.map((p) => ({ name: p.name, type: 'INT', accessMode: 'ReadOnly' })) },
  };
  const deviceDoc = {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: `gaps-${slaveID}`, namespace: 'default' },
    spec: {
      deviceModelRef: { name: 'gaps' },
      protocol: { protocolName: 'modbus', configData: { communicateMode: 'TCP', ip: '127.0.0.1', port, slaveID } },
      properties: PROPS.map((p) => ({ name: p.name, visitors: { protocolName: 'modbus', configData: { register: p.register, offset: p.offset, limit: 1, dataType: 'uint16' } } })),
    },
  };
  const { model } = parseObject(modelDoc);
  const { device, errors } = parseObject(deviceDoc);
  if (!model || !device) throw new Error(errors.join('; '));
  const bound: BoundProperty[] = PROPS.map((p) => ({ name: p.name, visitor: device.properties.find((d) => d.name === p.name)!.visitor, model: model.properties.find((m) => m.name === p.name)! }));
  return { device, model, bound };
}

describe('modbus reads around holes in the register map, learned per slave', () => {
  let server: ModbusTcpServer;
  const pool = new TransportPool();
  /** Requests put on the line, by slave id. */
  const requests = new Map<number, number>();
  const connections = new Map<number, { connection: DeviceConnection; bound: BoundProperty[] }>();

  const cycle = async (slave: number): Promise<{ values: Record<string, PropertyValue | Error>; requests: number }> => {
    const { connection, bound } = connections.get(slave)!;
    const before = requests.get(slave) ?? 0;
    const values = await connection.readMany!(bound);
    return { values: Object.fromEntries(bound.map((p, i) => [p.name, values[i]!])), requests: (requests.get(slave) ?? 0) - before };
  };

  beforeAll(async () => {
    const hr = { 0: [100, 101, 102, 103, 104, 105, 0, 0, 0, 0, 110, 111, 112] };
    const ir = { 5: [205, 206, 207] };
    server = await startModbusTcp({
      slaves: {
        1: { hr, ir, refuse: { hr: [[3, 4, 2], [10, 11, 3]], ir: [[6, 7, 4]] } },
        2: { hr, ir },
      },
    });
    // Counts what the mapper asks of its line; the line itself stays the mapper's.
    const acquire = pool.acquire.bind(pool);
    pool.acquire = (key, open, close) =>
      acquire(
        key,
        async () => {
          const line = (await open()) as unknown as ModbusLine;
          const request = line.request.bind(line);
          line.request = (slaveId, timeoutMs, send) => (requests.set(slaveId, (requests.get(slaveId) ?? 0) + 1), request(slaveId, timeoutMs, send));
          return line as never;
        },
        close,
      );
    const context: MapperContext = { log: createLogger('silent'), busUrl: '', transports: pool, push: () => undefined, lost: () => undefined };
    for (const slave of [1, 2]) {
      const { device, model, bound } = manifests(slave, server.port);
      connections.set(slave, { connection: await modbusMapper.connect(device, model, context), bound });
    }
  });

  afterAll(async () => {
    for (const { connection } of connections.values()) await connection.close();
    await pool.closeAll();
    await server?.stop();
  });

  it('reads every neighbour of a hole from the first cycle; a property whose own register raises an exception fails alone', async () => {
    const { values } = await cycle(1);
    expect(values).toMatchObject({ a: 100, b: 101, c: 102, d: 104, e: 105, g: 111, h: 112, p: 205, q: 207 });
    expect(values.f).toBeInstanceOf(Error);
    expect(String(values.f)).toMatch(/exception 3/);
  });

  it('learns the holes: after the first cycles, requests per cycle are one per run of registers between holes', async () => {
    await cycle(1);
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) counts.push((await cycle(1)).requests);
    // hr: [0-2] [4-5] [10] [11-12], ir: [5] [7] — each hole splits one request in two, no more.
    expect(counts).toEqual([6, 6, 6]);
    expect(counts[0]).toBeLessThanOrEqual(WITHOUT_HOLES + 2 * 3);
  });

  it('the neighbours keep updating after the holes are learned', async () => {
    await server.set(1, 'hr', 4, [1004]);
    await server.set(1, 'ir', 7, [2007]);
    const { values } = await cycle(1);
    expect(values).toMatchObject({ d: 1004, q: 2007, a: 100, h: 112 });
    expect(values.f).toBeInstanceOf(Error);
  });

  it('holes are learned per slave: another slave on the same line keeps its merged reads', async () => {
    for (let i = 0; i < 2; i++) {
      const { values, requests: n } = await cycle(2);
      expect(n).toBe(WITHOUT_HOLES);
      expect(values).toMatchObject({ a: 100, d: 104, f: 110, p: 205, q: 207 });
    }
  });
});
