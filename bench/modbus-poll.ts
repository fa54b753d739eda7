/**
 * modbus-poll: 20 slaves × 20 holding registers on one pymodbus TCP server, read through the
 * Modbus mapper naively (one request per property) and coalesced (one request per run of
 * neighbouring registers), in the same run. Figures: register values and Modbus requests per second.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { modbusMapper } from '../mappers/modbus/mapper.js';
import type { ModbusLine } from '../mappers/modbus/line.js';
import type { Device, DeviceModel } from '../src/devices/model.js';
import type { BoundProperty, DeviceConnection } from '../src/mapperhost/contract.js';
import { TransportPool } from '../src/mapperhost/transports.js';
import { createLogger } from '../src/log.js';
import { report, round } from './lib/report.js';

const SLAVES = 20;
const REGISTERS = 20;
const SECONDS = Number(process.env.BENCH_MODBUS_S ?? 5);
const SERVER = fileURLToPath(new URL('../../test/fixtures/modbus/server.py', import.meta.url));

const model: DeviceModel = {
  id: 'default/bench-meter',
  namespace: 'default',
  name: 'bench-meter',
  apiVersion: 'devices.kubeedge.io/v1beta1',
  properties: Array.from({ length: REGISTERS }, (_, j) => ({ name: `r${j}`, type: 'int' as const, accessMode: 'ReadOnly' as const })),
};

function device(slave: number, port: number): Device {
  return {
    id: `default/slave-${slave}`,
    namespace: 'default',
    name: `slave-${slave}`,
    apiVersion: 'devices.kubeedge.io/v1beta1',
    modelId: model.id,
    labels: {},
    protocol: { name: 'modbus', config: { communicateMode: 'TCP', ip: '127.0.0.1', port, slaveID: slave } },
    properties: model.properties.map((p, j) => ({
      name: p.name,
      visitor: { register: 'HoldingRegister', offset: j, limit: 1, dataType: 'int16' },
      reportToCloud: false,
    })),
    reported: {},
    fields: {
      protocol: 'spec.protocol.configData',
      properties: 'spec.properties',
      visitors: Object.fromEntries(model.properties.map((p, j) => [p.name, `spec.properties.${j}.visitors.configData`])),
    },
  };
}

interface Run {
  values: number;
  requests: number;
  seconds: number;
}

async function poll(connections: DeviceConnection[], properties: BoundProperty[], coalesced: boolean): Promise<Run> {
  let values = 0;
  let requests = 0;
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  while (performance.now() < deadline) {
    for (const connection of connections) {
      if (coalesced) {
        const results = await connection.readMany!(properties);
        values += results.filter((r) => !(r instanceof Error)).length;
        requests += 1;
      } else {
        for (const property of properties) {
          await connection.read(property);
          values += 1;
          requests += 1;
        }
      }
    }
  }
  return { values, requests, seconds: (performance.now() - started) / 1000 };
}

/** Addresses the holes map lacks (exception 2 and 4): the properties sit around them, the first plans bridge them. */
const HOLES: Array<[number, number, 2 | 4]> = [
  [7, 8, 2],
  [14, 15, 4],
];
const CYCLES_TO_LEARN = 3;

/**
 * The same meter with holes in its map, on a server of its own: after the first cycles, which
 * learn the holes, Modbus requests per value read, counted at the line.
 */
async function pollWithHoles(): Promise<{ values: number; requests: number }> {
  // The properties' offsets step over the holes: 0-6, 8-13, 15-21.
  const offset = (j: number) => HOLES.reduce((o, [start]) => (o >= start ? o + 1 : o), j);
  const slaves = Object.fromEntries(Array.from({ length: SLAVES }, (_, s) => [String(s + 1), { refuse: { hr: HOLES } }]));
  const server = spawn('/usr/bin/python3', [SERVER, 'tcp', '--port', '0', JSON.stringify({ slaves })], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => createInterface({ input: server.stdout! }).once('line', (line) => resolve(Number(line.split(' ')[1]))));
    let requests = 0;
    const transports = new TransportPool();
    const acquire = transports.acquire.bind(transports);
    transports.acquire = (key, open, close) =>
      acquire(
        key,
        async () => {
          const line = (await open()) as unknown as ModbusLine;
          const request = line.request.bind(line);
          line.request = (...args) => (requests++, request(...args));
          return line as never;
        },
        close,
      );
    const log = createLogger('warn');
    const holed = (slave: number): Device => {
      const d = device(slave, port);
      return { ...d, properties: d.properties.map((p, j) => ({ ...p, visitor: { ...p.visitor, offset: offset(j) } })) };
    };
    const connections = await Promise.all(Array.from({ length: SLAVES }, (_, s) => modbusMapper.connect(holed(s + 1), model, { log, busUrl: '', transports, push: () => undefined, lost: () => undefined })));
    const properties: BoundProperty[] = holed(1).properties.map((p, j) => ({ name: p.name, visitor: p.visitor, model: model.properties[j]! }));
    for (let i = 0; i < CYCLES_TO_LEARN; i++) for (const connection of connections) await connection.readMany!(properties);
    requests = 0;
    const run = await poll(connections, properties, true);
    await Promise.all(connections.map((c) => c.close()));
    return { values: run.values, requests };
  } finally {
    server.kill('SIGTERM');
  }
}

export async function modbusPoll(): Promise<void> {
  const slaves = Object.fromEntries(Array.from({ length: SLAVES }, (_, s) => [String(s + 1), { hr: { '0': Array.from({ length: REGISTERS }, (_, j) => j) } }]));
  const server = spawn('/usr/bin/python3', [SERVER, 'tcp', '--port', '0', JSON.stringify({ slaves })], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    // The server prints `READY <port>` with the port it bound.
    const port = await new Promise<number>((resolve) => createInterface({ input: server.stdout! }).once('line', (line) => resolve(Number(line.split(' ')[1]))));
    const log = createLogger('warn');
    const transports = new TransportPool();
    const connections = await Promise.all(
      Array.from({ length: SLAVES }, (_, s) => modbusMapper.connect(device(s + 1, port), model, { log, busUrl: '', transports, push: () => undefined, lost: () => undefined })),
    );
    const properties: BoundProperty[] = device(1, port).properties.map((p, j) => ({ name: p.name, visitor: p.visitor, model: model.properties[j]! }));
    const check = await connections[SLAVES - 1]!.readMany!(properties);
    const verified = check.every((value, j) => value === j);
    const naive = await poll(connections, properties, false);
    const coalesced = await poll(connections, properties, true);
    await Promise.all(connections.map((c) => c.close()));
    const holes = await pollWithHoles();
    report('modbus-poll', {
      slaves: SLAVES,
      registers_per_slave: REGISTERS,
      naive_requests_per_s: Math.round(naive.requests / naive.seconds),
      naive_values_per_s: Math.round(naive.values / naive.seconds),
      requests_per_s: Math.round(coalesced.requests / coalesced.seconds),
      values_per_s: Math.round(coalesced.values / coalesced.seconds),
      request_reduction: round(naive.requests / naive.values / (coalesced.requests / coalesced.values), 1),
      speedup_vs_naive: round(coalesced.values / coalesced.seconds / (naive.values / naive.seconds), 1),
      values_verified: verified,
      // Close to request_reduction / (holes + 1): each learned hole costs one request per cycle, no more.
      request_reduction_with_holes: round(naive.requests / naive.values / (holes.requests / holes.values), 1),
    });
  } finally {
    server.kill('SIGTERM');
  }
}
