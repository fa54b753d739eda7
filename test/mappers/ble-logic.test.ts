/**
 * The BLE mapper's host-side logic: visitors as KubeEdge writes them, byte conversion, BTHome
 * and ATC advertisements, and an agent on a host without Bluetooth (this one). The radio itself
 * is exercised in the VM (ble.test.ts).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAtc, decodeBthome, measurementOf } from '../../mappers/ble/advertisement.js';
import { convertRead, decodeValue, encodeValue } from '../../mappers/ble/codec.js';
import { normalizeUuid, parseVisitor, protocolSchema, type GattVisitor } from '../../mappers/ble/config.js';
import { bleMapper } from '../../mappers/ble/mapper.js';
import { loadCatalog } from '../../src/devices/load.js';
import { describeIssues } from '../../src/mapperhost/device-config.js';
import { validateVisitors } from '../../src/mapperhost/validate.js';
import { parseWith } from '../../src/schema.js';
import { ROOT, startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { waitFor } from '../support/wait.js';

const SAMPLES = join(ROOT, 'test/fixtures/kubeedge-samples');
/** What is wrong with a visitor, as the mapper's `validate` words it inside the visitor. */
const visitorIssues = (visitor: Record<string, unknown>) => describeIssues(parseVisitor(visitor)!);
function gatt(visitor: Record<string, unknown>): GattVisitor {
  const parsed = parseVisitor(visitor);
  if (!parsed?.ok) throw new Error(`not a visitor: ${JSON.stringify(visitorIssues(visitor))}`);
  return parsed.value as GattVisitor;
}
const protocol = (config: Record<string, unknown>) => parseWith(protocolSchema, config);

describe('bluetooth visitors and protocol', () => {
  it("reads KubeEdge's CC2650 sample, folding the converter and dataWrite its indentation left beside them", () => {
    const catalog = loadCatalog([join(SAMPLES, 'build__crd-samples__devices__CC2650-device-model.yaml'), join(SAMPLES, 'build__crd-samples__devices__CC2650-device-instance.yaml')]);
    expect(catalog.errors).toEqual([]);
    const device = [...catalog.devices.values()][0]!;
    expect(device.protocol.name).toBe('bluetooth');
    expect(protocol(device.protocol.config)).toEqual({ ok: true, value: { macAddress: 'bc:6a:29:ae:cc:96' } });
    expect(bleMapper.validate(device, catalog.models.get(device.modelId)!)).toEqual([]);
    const visitors = new Map(device.properties.map((p) => [p.name, p.visitor]));
    const temperature = gatt(visitors.get('temperature')!);
    expect(temperature.characteristicUUID).toBe('f000aa0104514000b000000000000000');
    expect(temperature.dataConverter).toEqual({ startIndex: 1, endIndex: 0, shiftLeft: 0, shiftRight: 2, signed: false, orderOfOperations: [{ operationType: 'Multiply', operationValue: 0.03125 }] });
    const enable = gatt(visitors.get('temperature-enable')!);
    expect(enable.dataWrite).toEqual({ ON: Buffer.from([1]), OFF: Buffer.from([0]) });
    expect(Object.keys(gatt(visitors.get('io-data')!).dataWrite!)).toEqual(['Red', 'Green', 'RedGreen', 'Buzzer', 'BuzzerRed', 'BuzzerGreen', 'BuzzerRedGreen']);
    expect(gatt(visitors.get('io-config')!)).toEqual({ kind: 'gatt', characteristicUUID: 'f000aa6604514000b000000000000000', dataWrite: undefined, dataConverter: undefined, subscribe: undefined });
  });

  it('takes the v1beta1 configData shapes of KubeEdge mappers: base64 dataWrite, string operation values, any operation case', () => {
    const visitor = gatt({
      characteristicUUID: '00002A6E-0000-1000-8000-00805F9B34FB',
      dataWrite: { ON: 'AQ==' },
      dataConverter: { startIndex: 1, endIndex: 0, orderOfOperations: [{ operationType: 'divide', operationValue: '100' }], signed: true },
    });
    expect(visitor.characteristicUUID).toBe('2a6e');
    expect(visitor.dataWrite).toEqual({ ON: Buffer.from([1]) });
    expect(visitor.dataConverter!.orderOfOperations).toEqual([{ operationType: 'Divide', operationValue: 100 }]);
    expect(protocol({ macAddress: 'A4:C1:38:00:00:01', adapter: 'hci1' })).toEqual({ ok: true, value: { macAddress: 'a4:c1:38:00:00:01', adapter: 1 } });
  });

  it('names what is wrong with a bad visitor or protocol', () => {
    expect(visitorIssues({ characteristicUUID: 'xyz' })).toEqual(['characteristicUUID: expected a 16-bit, 32-bit or 128-bit UUID']);
    expect(visitorIssues({ characteristicUUID: '2a6e', dataConverter: { orderOfOperations: [{ operationType: 'Modulo', operationValue: 2 }] } })).toEqual([
      'dataConverter.orderOfOperations.0.operationType: expected one of Add, Subtract, Multiply, Divide',
    ]);
    expect(visitorIssues({ characteristicUUID: '2a6e', dataWrite: { ON: [256] } })).toEqual([expect.stringMatching(/^dataWrite\.ON: /)]);
    expect(visitorIssues({ characteristicUUID: '2a6e', subscribe: 'yes' })).toEqual([expect.stringMatching(/^subscribe: expected boolean/)]);
    expect(visitorIssues({ register: 'x' })).toEqual(['needs characteristicUUID (GATT) or advertisement and measurement']);
    expect(visitorIssues({ advertisement: 'eddystone', measurement: 'x' })).toEqual(['advertisement: expected one of bthome, atc']);
    expect(visitorIssues({ advertisement: 'bthome', measurement: 'temprature' })).toEqual(['measurement: bthome has no measurement "temprature"']);
    // A property without a visitor (listed in status.twins only) has nothing to read, and nothing wrong.
    expect(parseVisitor({})).toBeUndefined();
    expect(describeIssues(protocol({}))).toEqual(['needs macAddress (or localName) to find the device']);
    expect(describeIssues(protocol({ macAddress: 'BC6A29AECC96' }))).toEqual([expect.stringMatching(/^macAddress: expected a MAC address/)]);
  });

  it('normalizes UUIDs the way noble names them', () => {
    expect(normalizeUuid('F000AA01-0451-4000-B000-000000000000')).toBe('f000aa0104514000b000000000000000');
    expect(normalizeUuid('0x2A6E')).toBe('2a6e');
    expect(normalizeUuid('0000fcd2-0000-1000-8000-00805f9b34fb')).toBe('fcd2');
  });
});

describe('bytes to values and back', () => {
  const converter = { startIndex: 1, endIndex: 0, shiftLeft: 0, shiftRight: 2, signed: false, orderOfOperations: [{ operationType: 'Multiply' as const, operationValue: 0.03125 }] };

  it("converts a CC2650 IR reading as TI's formula does: (raw >> 2) × 0.03125", () => {
    // 0x0C5C = 3164 → 791 → 24.71875 °C; KubeEdge's digit-joining would read 0x1292 instead.
    expect(convertRead(Buffer.from([0x5c, 0x0c, 0x00, 0x00]), converter)).toBe(24.71875);
    expect(convertRead(Buffer.from([0x00, 0x01, 0x02, 0x03]), { ...converter, startIndex: 0, endIndex: 3, orderOfOperations: [] })).toBe(Math.floor(0x00010203 / 4));
    expect(convertRead(Buffer.from([0x03, 0x00, 0x01]), { ...converter, startIndex: 1, endIndex: 2, shiftRight: 0, shiftLeft: 1, orderOfOperations: [] })).toBe(2);
  });

  it('reads signed values when asked, applies operations in order, and refuses bytes the value does not have', () => {
    const signed = { startIndex: 1, endIndex: 0, shiftLeft: 0, shiftRight: 0, signed: true, orderOfOperations: [{ operationType: 'Divide' as const, operationValue: 100 }, { operationType: 'Add' as const, operationValue: 1 }] };
    expect(convertRead(Buffer.from([0x18, 0xfc]), signed)).toBe(-9);
    expect(() => convertRead(Buffer.from([0x01]), converter)).toThrow('dataConverter reads byte 1 but the value has 1 byte');
  });

  it('decodes without a converter by the model type, and reads a dataWrite value back as its name', () => {
    const plain = { kind: 'gatt' as const, characteristicUUID: 'aa' };
    expect(decodeValue(Buffer.from([0x34, 0x12]), plain, 'int')).toBe(0x1234);
    expect(decodeValue(Buffer.from('CC2650\0\0'), plain, 'string')).toBe('CC2650');
    expect(decodeValue(Buffer.from([0, 2]), plain, 'boolean')).toBe(true);
    expect(decodeValue(Buffer.from([1]), { ...plain, dataWrite: { ON: Buffer.from([1]), OFF: Buffer.from([0]) } }, 'string')).toBe('ON');
    expect(() => decodeValue(Buffer.alloc(0), plain, 'int')).toThrow('empty');
  });

  it('encodes writes through dataWrite or by the model type', () => {
    const plain = { kind: 'gatt' as const, characteristicUUID: 'aa' };
    const withMap = { ...plain, dataWrite: { Red: Buffer.from([1]), Green: Buffer.from([2]) } };
    expect(encodeValue('Green', withMap, 'string')).toEqual(Buffer.from([2]));
    expect(encodeValue('red', withMap, 'string')).toEqual(Buffer.from([1]));
    expect(() => encodeValue('Blue', withMap, 'string')).toThrow('"Blue" is not in dataWrite (Red, Green)');
    expect(encodeValue(100, plain, 'int')).toEqual(Buffer.from([100]));
    expect(encodeValue(1000, plain, 'int')).toEqual(Buffer.from([0xe8, 0x03]));
    expect(encodeValue(-2, plain, 'int')).toEqual(Buffer.from([0xfe, 0xff]));
    expect(encodeValue(true, plain, 'boolean')).toEqual(Buffer.from([1]));
    expect(encodeValue('hi', plain, 'string')).toEqual(Buffer.from('hi'));
  });
});

describe('advertisements', () => {
  it("decodes BTHome v2 objects as bthome.io's examples give them", () => {
    const decoded = decodeBthome(Buffer.from('40' + '0009' + '0161' + '02ca09' + '03bf13' + '04138a01' + '0c020c' + '2d01', 'hex'));
    expect(decoded.packetId).toBe(9);
    expect(decoded.measurements).toEqual([
      { name: 'packet_id', value: 9 },
      { name: 'battery', value: 97 },
      { name: 'temperature', value: 25.06 },
      { name: 'humidity', value: 50.55 },
      { name: 'pressure', value: 1008.83 },
      { name: 'voltage', value: 3.074 },
      { name: 'window', value: 1 },
    ]);
    expect(measurementOf(decodeBthome(Buffer.from('40' + '0218fc' + '0234ff', 'hex')), 'temperature', 1)).toBe(-2.04);
    expect(() => decodeBthome(Buffer.from('40' + '5305414243', 'hex'))).toThrow('0x53 runs past the end');
    expect(measurementOf(decodeBthome(Buffer.from('40' + '5303414243', 'hex')), 'text', 0)).toBe('ABC');
  });

  it('keeps what precedes an unknown object and refuses encrypted, v1 and truncated packets', () => {
    expect(decodeBthome(Buffer.from('40' + '0161' + 'ee0102', 'hex')).measurements).toEqual([{ name: 'battery', value: 97 }]);
    expect(() => decodeBthome(Buffer.from('41' + '0161', 'hex'))).toThrow('encrypted');
    expect(() => decodeBthome(Buffer.from('20' + '0161', 'hex'))).toThrow('version 1');
    expect(() => decodeBthome(Buffer.from('40' + '02ca', 'hex'))).toThrow('temperature runs past the end');
  });

  it('decodes the ATC1441 and pvvx formats of the LYWSD03MMC', () => {
    // ATC1441: MAC, temp 0x00EB = 23.5 °C, 45 %, 87 %, 2950 mV, frame 7 (big-endian).
    const atc = decodeAtc(Buffer.from('a4c138aabbcc' + '00eb' + '2d' + '57' + '0b86' + '07', 'hex'));
    expect(atc.measurements).toEqual([
      { name: 'temperature', value: 23.5 },
      { name: 'humidity', value: 45 },
      { name: 'battery', value: 87 },
      { name: 'battery_voltage', value: 2.95 },
      { name: 'packet_id', value: 7 },
    ]);
    // pvvx: MAC reversed, -1.25 °C, 55.55 %, 3001 mV, 99 %, counter 200, flags (little-endian).
    const pvvx = decodeAtc(Buffer.from('ccbbaa38c1a4' + '83ff' + 'b315' + 'b90b' + '63' + 'c8' + '04', 'hex'));
    expect(pvvx.measurements.map((m) => m.value)).toEqual([-1.25, 55.55, 3.001, 99, 200]);
    expect(() => decodeAtc(Buffer.alloc(10))).toThrow('expected 13 (ATC1441) or 15 (pvvx)');
  });
});

describe('an agent on a host without Bluetooth', () => {
  let agent: TestAgent;
  const dir = tempDir('ble-host-');
  beforeAll(async () => {
    mkdirSync(join(dir, 'profiles'));
    writeFileSync(join(dir, 'profiles/bad-visitor.yaml'), BAD_VISITOR);
    agent = await startTestAgent({ profiles: [join(ROOT, 'device-profiles/ble'), join(ROOT, 'device-profiles/demo'), join(dir, 'profiles')] });
  });
  afterAll(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const device = async (id: string): Promise<{ state: string; reason?: string }> => (await agent.api(`/api/v1/devices/${id}`)).json() as Promise<{ state: string; reason?: string }>;

  it('marks the BLE devices unhealthy, saying why, and serves everything else', async () => {
    await waitFor('BLE devices unhealthy', async () => (await device('default/sensortag-01')).state === 'unhealthy');
    for (const id of ['default/sensortag-01', 'default/bthome-thermometer-01', 'default/lywsd03mmc-01']) {
      const ble = await device(id);
      expect(ble.state).toBe('unhealthy');
      expect(ble.reason).toMatch(/^Bluetooth is not available: /);
    }
    await waitFor('the demo thermometer online', async () => (await device('default/thermometer-01')).state === 'online');
  });

  it('reports a bad visitor as the reason, before ever touching the radio', async () => {
    await waitFor('bad visitor unhealthy', async () => (await device('default/bad-ble')).state === 'unhealthy');
    expect((await device('default/bad-ble')).reason).toBe(BAD_MEASUREMENT);
  });

  it('finds the same bad visitor when the manifests load, at its file, document and field', () => {
    const catalog = loadCatalog([join(dir, 'profiles')]);
    expect(validateVisitors(catalog, [bleMapper])).toEqual([{ file: join(dir, 'profiles/bad-visitor.yaml'), index: 1, path: 'spec.properties.0.visitors.configData.measurement', reason: 'bthome has no measurement "temprature"' }]);
  });
});

const BAD_MEASUREMENT = 'spec.properties.0.visitors.configData.measurement: bthome has no measurement "temprature"';
const BAD_VISITOR = `
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: bad-ble-model, namespace: default}
spec:
  protocol: bluetooth
  properties:
    - {name: temperature, type: FLOAT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: bad-ble, namespace: default}
spec:
  deviceModelRef: {name: bad-ble-model}
  protocol: {protocolName: bluetooth, configData: {macAddress: "A4:C1:38:00:00:09"}}
  properties:
    - name: temperature
      visitors: {protocolName: bluetooth, configData: {advertisement: bthome, measurement: temprature}}
`;
