/**
 * KubeEdge Device/DeviceModel manifests: the upstream samples load, both API versions normalize
 * to the internal model, and broken manifests are reported precisely while the rest still loads;
 * so are visitors the built-in mappers refuse, by `edge-agent validate` (run as a child process).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { splitDocuments } from '../../src/devices/load.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatError, loadCatalog, type Catalog } from '../../src/devices/load.js';
import { cycleToMs } from '../../src/devices/normalize.js';
import { validateVisitors } from '../../src/mapperhost/validate.js';
import { builtinMappers } from '../../mappers/builtin.js';
import { CLI, ROOT, tempDir } from '../support/agent.js';

const SAMPLES = join(ROOT, 'test/fixtures/kubeedge-samples');

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Manifest {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { deviceModelRef?: { name?: string } };
}

interface SampleFile {
  file: string;
  /** The upstream folder, i.e. the file name up to its last `__`. */
  folder: string;
  docs: Manifest[];
}

const samples: SampleFile[] = readdirSync(SAMPLES)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort()
  .map((file) => ({
    file,
    folder: file.slice(0, file.lastIndexOf('__')),
    docs: splitDocuments(readFileSync(join(SAMPLES, file), 'utf8')).map((d) => yaml.load(d.text) as Manifest),
  }));

const isKind = (kind: string) => (s: SampleFile) => s.docs.some((d) => d.kind === kind);
const deviceFiles = samples.filter(isKind('Device'));
const modelFiles = samples.filter(isKind('DeviceModel'));

/**
 * The model file of a device file: same upstream folder, defines a DeviceModel of the referenced
 * name. Several upstream folders reuse model names, so the folder decides.
 */
function modelFileOf(device: SampleFile): SampleFile {
  const refs = new Set(device.docs.filter((d) => d.kind === 'Device').map((d) => d.spec?.deviceModelRef?.name));
  const candidates = modelFiles.filter(
    (m) => m.folder === device.folder && m.docs.some((d) => d.kind === 'DeviceModel' && refs.has(d.metadata?.name)),
  );
  if (candidates.length !== 1) throw new Error(`${device.file}: expected one model file, found ${candidates.map((c) => c.file).join(', ') || 'none'}`);
  return candidates[0]!;
}

const pairs = deviceFiles.map((device) => ({ device, model: modelFileOf(device) }));

function loadPair(deviceFile: string, modelFile: string): Catalog {
  return loadCatalog([join(SAMPLES, deviceFile), join(SAMPLES, modelFile)]);
}

function loadSampleDevice(deviceFile: string) {
  const pair = pairs.find((p) => p.device.file === deviceFile);
  if (!pair) throw new Error(`no sample ${deviceFile}`);
  const catalog = loadPair(pair.device.file, pair.model.file);
  expect(catalog.errors).toEqual([]);
  return catalog;
}

let work: string;
let fileCounter = 0;

/** Writes YAML documents (objects are stringified, strings kept verbatim) into one file. */
function writeManifests(docs: Array<object | string>, name = `manifests-${++fileCounter}.yaml`): string {
  const file = join(work, name);
  writeFileSync(file, docs.map((d) => (typeof d === 'string' ? d : yaml.dump(d))).join('---\n'));
  return file;
}

const v1beta1Model = (name = 'meter-model', namespace?: string) => ({
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'DeviceModel',
  metadata: { name, ...(namespace ? { namespace } : {}) },
  spec: {
    protocol: 'modbus',
    properties: [
      { name: 'power', type: 'FLOAT', accessMode: 'ReadOnly', minimum: '0', maximum: 1000, unit: 'W' },
      { name: 'relay', type: 'BOOLEAN', accessMode: 'ReadWrite' },
    ],
  },
});

const v1beta1Device = (name = 'meter-01', model = 'meter-model', extra: Record<string, unknown> = {}) => ({
  apiVersion: 'devices.kubeedge.io/v1beta1',
  kind: 'Device',
  metadata: { name },
  spec: {
    deviceModelRef: { name: model },
    nodeName: 'edge-1',
    protocol: { protocolName: 'modbus', configData: { communicateMode: 'TCP', ip: '10.0.0.5', port: 502 } },
    properties: [
      { name: 'power', collectCycle: 1000, reportCycle: 5000, reportToCloud: true, visitors: { protocolName: 'modbus', configData: { register: 'HoldingRegister', offset: 2 } } },
      { name: 'relay', desired: { value: false, metadata: { type: 'boolean' } }, visitors: { configData: { register: 'CoilRegister', offset: 0 } } },
    ],
    ...extra,
  },
});

const v1alpha2Model = (name = 'lamp-model') => ({
  apiVersion: 'devices.kubeedge.io/v1alpha2',
  kind: 'DeviceModel',
  metadata: { name },
  spec: {
    properties: [
      { name: 'brightness', type: { int: { accessMode: 'ReadWrite', minimum: 0, maximum: '100', unit: '%', defaultValue: 50 } } },
      { name: 'on', type: { boolean: { defaultValue: false } } },
    ],
  },
});

const v1alpha2Device = (name: string, spec: Record<string, unknown>, status?: unknown) => ({
  apiVersion: 'devices.kubeedge.io/v1alpha2',
  kind: 'Device',
  metadata: { name },
  spec: { deviceModelRef: { name: 'lamp-model' }, ...spec },
  ...(status ? { status } : {}),
});

beforeAll(() => {
  work = tempDir('devices-test-');
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Upstream samples
// ---------------------------------------------------------------------------------------------

describe('upstream KubeEdge samples', () => {
  it('pairs every Device file with one model file, and every model file is used', () => {
    expect(deviceFiles.length).toBeGreaterThan(0);
    const used = new Set(pairs.map((p) => p.model.file));
    expect(modelFiles.map((m) => m.file).filter((f) => !used.has(f))).toEqual([]);
    // Only Devices and DeviceModels live in the folder.
    expect(samples.flatMap((s) => s.docs.map((d) => d.kind)).filter((k) => k !== 'Device' && k !== 'DeviceModel')).toEqual([]);
  });

  it('covers both API versions', () => {
    const versions = new Set(samples.flatMap((s) => s.docs.map((d) => `${d.apiVersion} ${d.kind}`)));
    expect([...versions].sort()).toEqual([
      'devices.kubeedge.io/v1alpha2 Device',
      'devices.kubeedge.io/v1alpha2 DeviceModel',
      'devices.kubeedge.io/v1beta1 Device',
      'devices.kubeedge.io/v1beta1 DeviceModel',
    ]);
  });

  it.each(pairs.map((p) => [p.device.file, p.model.file]))('%s loads with %s', (deviceFile, modelFile) => {
    const catalog = loadPair(deviceFile, modelFile);
    expect(catalog.errors).toEqual([]);
    expect(catalog.notes).toEqual([]);
    const device = pairs.find((p) => p.device.file === deviceFile)!.device;
    const expectedDevices = device.docs.filter((d) => d.kind === 'Device').map((d) => `${d.metadata?.namespace ?? 'default'}/${d.metadata?.name}`);
    expect([...catalog.devices.keys()].sort()).toEqual(expectedDevices.sort());
    for (const loaded of catalog.devices.values()) {
      expect(catalog.models.has(loaded.modelId)).toBe(true);
      expect(loaded.source.file).toBe(join(SAMPLES, deviceFile));
    }
  });

  it.each(modelFiles.map((m) => [m.file]))('model %s loads on its own', (modelFile) => {
    const catalog = loadCatalog([join(SAMPLES, modelFile)]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.models.size).toBe(modelFiles.find((m) => m.file === modelFile)!.docs.length);
    for (const model of catalog.models.values()) expect(model.properties.length).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Normalization
// ---------------------------------------------------------------------------------------------

describe('cycleToMs', () => {
  it.each([
    [undefined, undefined],
    [0, undefined],
    [1, 1],
    [1000, 1000],
    [10_000, 10_000],
    [999_999, 999_999], // the largest value still read as milliseconds
    [1_000_000, 1], // from here on: Go durations in nanoseconds
    [1_500_000, 1.5],
    [1_000_000_000, 1000],
    [10_000_000_000, 10_000],
  ])('cycleToMs(%s) = %s', (cycle, ms) => {
    expect(cycleToMs(cycle)).toBe(ms);
  });
});

describe('v1alpha2 normalization', () => {
  it('modbus TCP sample: ids, default namespace, protocol from the key, visitor, cycle, seeds, nodeSelector', () => {
    const catalog = loadSampleDevice('build__crd-samples__devices__modbustcp-device-instance.yaml');
    const device = catalog.devices.get('default/modbustcp-device')!;
    expect(device).toMatchObject({
      id: 'default/modbustcp-device',
      namespace: 'default',
      name: 'modbustcp-device',
      apiVersion: 'devices.kubeedge.io/v1alpha2',
      modelId: 'default/modbus-sample-model',
      nodeName: 'test',
      description: 'TISimplelinkSensorTag',
      labels: { description: 'TISimplelinkSensorTag', manufacturer: 'TexasInstruments', model: 'CC2650' },
      protocol: { name: 'modbus', config: { slaveID: 1 }, common: { tcp: { ip: '192.168.33.1', port: 502 } } },
      reported: { 'temperature-enable': { value: '0', type: 'integer' } },
    });
    expect(device.properties).toEqual([
      {
        name: 'temperature',
        visitor: { register: 'CoilRegister', offset: 0, limit: 1, scale: 1, isSwap: true, isRegisterSwap: true },
        collectCycleMs: 5000,
        reportCycleMs: undefined,
        reportToCloud: true,
        desired: undefined,
      },
      {
        name: 'temperature-enable',
        visitor: { register: 'CoilRegister', offset: 3, limit: 1, scale: 1, isSwap: true, isRegisterSwap: true },
        collectCycleMs: undefined,
        reportCycleMs: undefined,
        reportToCloud: true,
        desired: { value: '0', type: 'integer' },
      },
    ]);
  });

  it('modbus model: one type key becomes the property type, numbers and defaults normalized', () => {
    const catalog = loadSampleDevice('build__crd-samples__devices__modbustcp-device-instance.yaml');
    const model = catalog.models.get('default/modbus-sample-model')!;
    expect(model.protocol).toBeUndefined();
    expect(model).toMatchObject({
      id: 'default/modbus-sample-model',
      namespace: 'default',
      name: 'modbus-sample-model',
      apiVersion: 'devices.kubeedge.io/v1alpha2',
      properties: [
        { name: 'temperature', type: 'int', accessMode: 'ReadWrite', maximum: 100, unit: 'degree celsius', defaultValue: undefined },
        { name: 'temperature-enable', type: 'int', accessMode: 'ReadWrite', defaultValue: '1' },
      ],
    });
  });

  it('bluetooth sample: protocol block names the protocol and carries its config', () => {
    const catalog = loadSampleDevice('build__crd-samples__devices__CC2650-device-instance.yaml');
    const device = catalog.devices.get('default/sensor-tag-instance-01')!;
    expect(device.protocol).toEqual({ name: 'bluetooth', config: { macAddress: 'BC:6A:29:AE:CC:96' }, common: undefined });
    expect(device.nodeName).toBe('edge-node1');
    expect(device.properties.map((p) => p.name)).toEqual([
      'temperature',
      'temperature-enable',
      'io-config-initialize',
      'io-data-initialize',
      'io-config',
      'io-data',
    ]);
    expect(device.properties[2]!.visitor).toEqual({ characteristicUUID: 'f000aa6604514000b000000000000000' });
  });

  it('bluetooth sample without protocol block: the visitors name the protocol', () => {
    const catalog = loadSampleDevice('kubeedge__mappers-go__tests__e2e__mapper__bluetooth__crds__deviceinstance.yaml');
    const device = catalog.devices.get('default/mock-temp-sensor-instance')!;
    expect(device.protocol.name).toBe('bluetooth');
    expect(device.nodeName).toBe('edge-node-bluetooth');
    expect(device.properties.find((p) => p.name === 'temperatureconversion')!.visitor).toEqual({
      characteristicUUID: '2d816a41d33544f57b559000200c8a77',
      dataConverter: { startIndex: 1, endIndex: 0, shiftRight: 2, orderOfOperations: [{ operationType: 'Multiply', operationValue: 0.03125 }] },
    });
    // A visitor with an empty protocol block (`bluetooth:` and nothing under it).
    expect(device.properties.find((p) => p.name === 'io-data')).toMatchObject({ visitor: {}, desired: { value: 'Red', type: 'string' } });
  });

  it('customizedProtocol sample: protocolName, configData, common, visitor configData, desired and reported seeds', () => {
    const catalog = loadSampleDevice('kubeedge__mappers-go__build__crd-samples__devices__random-device-instance.yaml');
    const device = catalog.devices.get('default/random-instance-01')!;
    expect(device.protocol).toEqual({ name: 'virtualProtocol', config: { deviceID: 1 }, common: { customizedValues: { protocolID: 1 } } });
    expect(device.nodeName).toBe('edge51');
    expect(device.properties).toEqual([
      { name: 'random-int', visitor: { dataType: 'int' }, collectCycleMs: undefined, reportCycleMs: undefined, reportToCloud: true, desired: { value: '100', type: 'integer' } },
      { name: 'random-float', visitor: { dataType: 'float' }, collectCycleMs: undefined, reportCycleMs: undefined, reportToCloud: true, desired: { value: '30', type: 'float' } },
    ]);
    expect(device.reported).toEqual({ 'random-int': { value: '100', type: 'integer' }, 'random-float': { value: '30', type: 'float' } });
  });

  it('status-only properties (no visitor) become properties, and a device without any protocol has an empty one', () => {
    const catalog = loadSampleDevice('build__crd-samples__devices__led-light-device-instance.yaml');
    const device = catalog.devices.get('default/led-light-instance-01')!;
    expect(device.protocol).toEqual({ name: '', config: {}, common: undefined });
    expect(device.properties).toEqual([{ name: 'power-status', visitor: {}, collectCycleMs: undefined, reportCycleMs: undefined, reportToCloud: true, desired: undefined }]);
    expect(catalog.models.get('default/led-light')!.properties).toEqual([
      expect.objectContaining({ name: 'power-status', type: 'string', accessMode: 'ReadWrite', defaultValue: 'OFF' }),
      expect.objectContaining({ name: 'gpio-pin-number', type: 'int', accessMode: 'ReadOnly', defaultValue: '18' }),
    ]);
  });

  it('inline manifest: namespace, nodeSelector, cycles in ms and ns, status seeds', () => {
    const file = writeManifests([
      { ...v1alpha2Model(), metadata: { name: 'lamp-model', namespace: 'factory' } },
      {
        ...v1alpha2Device('lamp-7', {
          protocol: { modbus: { slaveID: 3 }, common: { com: { serialPort: '/dev/ttyUSB0', baudRate: 9600 } } },
          nodeSelector: { nodeSelectorTerms: [{ matchExpressions: [{ key: '', operator: 'In', values: ['edge-7', 'edge-8'] }] }] },
          propertyVisitors: [
            { propertyName: 'brightness', modbus: { register: 'HoldingRegister', offset: 1 }, collectCycle: 500, reportCycle: 2_000_000_000 },
            { propertyName: 'on', modbus: { register: 'CoilRegister', offset: 0 }, collectCycle: 250_000_000 },
          ],
        }, {
          twins: [
            { propertyName: 'brightness', desired: { value: 80, metadata: { type: 'integer' } }, reported: { value: '75' } },
            { propertyName: 'on', reported: { value: true, metadata: { type: 'boolean' } } },
          ],
        }),
        metadata: { name: 'lamp-7', namespace: 'factory' },
      },
    ]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.models.get('factory/lamp-model')!.properties[0]).toMatchObject({ type: 'int', minimum: 0, maximum: 100, unit: '%', defaultValue: '50' });
    const device = catalog.devices.get('factory/lamp-7')!;
    expect(device).toMatchObject({
      id: 'factory/lamp-7',
      namespace: 'factory',
      modelId: 'factory/lamp-model',
      nodeName: 'edge-7',
      protocol: { name: 'modbus', config: { slaveID: 3 }, common: { com: { serialPort: '/dev/ttyUSB0', baudRate: 9600 } } },
      reported: { brightness: { value: '75', type: undefined }, on: { value: 'true', type: 'boolean' } },
    });
    expect(device.properties).toEqual([
      { name: 'brightness', visitor: { register: 'HoldingRegister', offset: 1 }, collectCycleMs: 500, reportCycleMs: 2000, reportToCloud: true, desired: { value: '80', type: 'integer' } },
      { name: 'on', visitor: { register: 'CoilRegister', offset: 0 }, collectCycleMs: 250, reportCycleMs: undefined, reportToCloud: true, desired: undefined },
    ]);
  });

  it('a device without nodeSelector has no nodeName (any node)', () => {
    const file = writeManifests([v1alpha2Model(), v1alpha2Device('lamp-1', { propertyVisitors: [{ propertyName: 'on', opcua: { nodeID: 'ns=2;i=3' } }] })]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    const device = catalog.devices.get('default/lamp-1')!;
    expect(device.nodeName).toBeUndefined();
    expect(device.protocol.name).toBe('opcua');
    expect(device.properties[0]!.visitor).toEqual({ nodeID: 'ns=2;i=3' });
  });

  it.each([
    ['no protocol block', undefined],
    ['a protocol block with only `common`', { common: { customizedValues: { protocolID: 1 } } }],
  ])('customizedProtocol visitors name the protocol when there is %s', (_, protocol) => {
    const file = writeManifests([
      v1alpha2Model(),
      v1alpha2Device('lamp-2', {
        ...(protocol ? { protocol } : {}),
        propertyVisitors: [{ propertyName: 'on', customizedProtocol: { protocolName: 'virtualProtocol', configData: { dataType: 'boolean' } } }],
      }),
    ]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    const device = catalog.devices.get('default/lamp-2')!;
    expect(device.protocol.name).toBe('virtualProtocol');
    expect(device.properties[0]!.visitor).toEqual({ dataType: 'boolean' });
  });
});

describe('v1beta1 normalization', () => {
  it('vled sample: nanosecond cycles, nodeName, protocol configData, visitor, reported seed, upper-case model type', () => {
    const catalog = loadSampleDevice('kubeedge__examples__sound-equipment-fault-detection__vled__resource__vled-instance.yaml');
    const device = catalog.devices.get('default/vled-instance-01')!;
    expect(device).toEqual({
      id: 'default/vled-instance-01',
      namespace: 'default',
      name: 'vled-instance-01',
      apiVersion: 'devices.kubeedge.io/v1beta1',
      modelId: 'default/vled-01',
      nodeName: 'kedge1',
      description: undefined,
      labels: { model: 'vled-01' },
      protocol: {
        name: 'virtualProtocol',
        config: { deviceID: 2, serialPort: '/dev/ttyS0', baudRate: 9600, dataBits: 8, parity: 'even', stopBits: 1, protocolID: 1 },
      },
      properties: [
        {
          name: 'status',
          visitor: { dataType: 'int' },
          collectCycleMs: 1000,
          reportCycleMs: 1000,
          reportToCloud: true,
          desired: undefined,
          // For a DMI mapper, passed through.
          pushMethod: { mqtt: { address: 'tcp://127.0.0.1:1883', topic: 'status', qos: 0, retained: false } },
        },
      ],
      reported: { status: { value: '100', type: 'integer' } },
      fields: { protocol: 'spec.protocol.configData', properties: 'spec.properties', visitors: { status: 'spec.properties.0.visitors.configData' } },
      source: { file: expect.stringContaining('vled-instance.yaml'), index: 0 },
    });
    expect(catalog.models.get('default/vled-01')).toMatchObject({
      protocol: 'virtualProtocol',
      properties: [{ name: 'status', type: 'int', accessMode: 'ReadWrite' }],
    });
  });

  it('temperature sample: millisecond cycles, desired seed without type, string numbers in the model', () => {
    const catalog = loadSampleDevice('kubeedge__examples__temperature-sensor-demo__crds__temperature-instance.yaml');
    const device = catalog.devices.get('default/temperature-instance')!;
    expect(device.nodeName).toBe('kind-worker');
    expect(device.protocol).toEqual({ name: 'modbus', config: { communicateMode: 'TCP', port: '5502', slaveID: 1, ip: '10.244.1.13' } });
    expect(device.properties.map((p) => [p.name, p.collectCycleMs, p.reportCycleMs, p.desired])).toEqual([
      ['temperature', 10_000, 10_000, undefined],
      ['temperature-switch', 10_000, 10_000, { value: '1', type: undefined }],
    ]);
    expect(device.properties[0]!.visitor).toMatchObject({ dataType: 'float', register: 'HoldingRegister', scale: 0.1 });
    expect(catalog.models.get('default/temperature-model')!.properties).toEqual([
      { name: 'temperature', description: 'actual temperature', type: 'float', accessMode: 'ReadWrite', minimum: 0, maximum: 100, unit: 'Celsius' },
      { name: 'temperature-switch', description: 'the switch of device 0:off,1:on', type: 'int', accessMode: 'ReadWrite', minimum: undefined, maximum: undefined, unit: undefined },
    ]);
  });

  it('counter sample: explicit namespace, empty configData, reportToCloud as given', () => {
    const catalog = loadSampleDevice('kubeedge__examples__new-counter-demo__crds__counter-instance.yaml');
    const device = catalog.devices.get('default/counter-instance')!;
    expect(device.protocol).toEqual({ name: 'virtualProtocol', config: {} });
    expect(device.properties.map((p) => [p.name, p.visitor, p.collectCycleMs, p.reportCycleMs, p.reportToCloud])).toEqual([
      ['status', { name: 'status' }, 10_000, 10_000, true],
      ['count', { name: 'count' }, 1000, 10_000, true],
    ]);
  });

  it('onvif sample: reportToCloud defaults to false, stream properties', () => {
    const catalog = loadSampleDevice('kubeedge__mappers-go__mappers__kubeedge-v1.17.0__onvif-mapper__resource__onvifdevice-instance.yaml');
    const device = catalog.devices.get('default/onvif-device-01')!;
    expect(device.properties.map((p) => [p.name, p.reportToCloud])).toEqual([
      ['getURI', true],
      ['saveFrame', false],
      ['saveVideo', false],
    ]);
    expect(catalog.models.get('default/onvif-model')!.properties.map((p) => p.type)).toEqual(['string', 'stream', 'stream']);
  });

  it('inline manifest: namespace, desired value of any YAML scalar becomes a string, status reported seeds', () => {
    const file = writeManifests([
      v1beta1Model('meter-model', 'plant-a'),
      {
        ...v1beta1Device(),
        metadata: { name: 'meter-01', namespace: 'plant-a', labels: { description: 'main meter' } },
        status: { twins: [{ propertyName: 'power', reported: { value: 12.5, metadata: { type: 'float' } } }] },
      },
    ]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.models.get('plant-a/meter-model')!.properties[0]).toMatchObject({ type: 'float', accessMode: 'ReadOnly', minimum: 0, maximum: 1000, unit: 'W' });
    expect(catalog.devices.get('plant-a/meter-01')).toMatchObject({
      id: 'plant-a/meter-01',
      namespace: 'plant-a',
      modelId: 'plant-a/meter-model',
      nodeName: 'edge-1',
      description: 'main meter',
      protocol: { name: 'modbus', config: { ip: '10.0.0.5', port: 502 } },
      properties: [
        { name: 'power', visitor: { register: 'HoldingRegister', offset: 2 }, collectCycleMs: 1000, reportCycleMs: 5000, reportToCloud: true, desired: undefined },
        { name: 'relay', visitor: { register: 'CoilRegister', offset: 0 }, collectCycleMs: undefined, reportCycleMs: undefined, reportToCloud: false, desired: { value: 'false', type: 'boolean' } },
      ],
      reported: { power: { value: '12.5', type: 'float' } },
    });
  });

  it('an empty nodeName means any node', () => {
    const file = writeManifests([v1beta1Model(), v1beta1Device('meter-02', 'meter-model', { nodeName: '' })]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.devices.get('default/meter-02')!.nodeName).toBeUndefined();
  });
});

describe('where the protocol blocks sit in the manifest', () => {
  it('v1beta1: configData of the protocol and of each property\'s visitors', () => {
    const catalog = loadCatalog([writeManifests([v1beta1Model(), v1beta1Device()])]);
    expect(catalog.devices.get('default/meter-01')!.fields).toEqual({
      protocol: 'spec.protocol.configData',
      properties: 'spec.properties',
      visitors: { power: 'spec.properties.0.visitors.configData', relay: 'spec.properties.1.visitors.configData' },
    });
  });

  it('v1alpha2: the protocol key, customizedProtocol, common, and a property listed only in status.twins has no visitor', () => {
    const file = writeManifests([
      v1alpha2Model(),
      v1alpha2Device('lamp-8', {
        protocol: { modbus: { slaveID: 3 }, common: { tcp: { ip: '10.0.0.8' } } },
        propertyVisitors: [{ propertyName: 'brightness', collectCycle: 500, modbus: { register: 'HoldingRegister', offset: 1 } }],
      }, { twins: [{ propertyName: 'on', reported: { value: 'true' } }] }),
      v1alpha2Device('lamp-9', {
        protocol: { customizedProtocol: { protocolName: 'virtualProtocol', configData: {} } },
        propertyVisitors: [{ propertyName: 'on' }, { propertyName: 'brightness', customizedProtocol: { protocolName: 'virtualProtocol', configData: { function: 'sine' } } }],
      }),
    ]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.devices.get('default/lamp-8')!.fields).toEqual({
      protocol: 'spec.protocol.modbus',
      common: 'spec.protocol.common',
      properties: 'spec.propertyVisitors',
      visitors: { brightness: 'spec.propertyVisitors.0.modbus' },
    });
    expect(catalog.devices.get('default/lamp-9')!.fields).toMatchObject({
      protocol: 'spec.protocol.customizedProtocol.configData',
      visitors: { on: 'spec.propertyVisitors.0', brightness: 'spec.propertyVisitors.1.customizedProtocol.configData' },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Other kinds and invalid manifests
// ---------------------------------------------------------------------------------------------

describe('documents of other kinds', () => {
  it('skips a ConfigMap with a note and loads the rest of the file', () => {
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: 'b' } };
    const file = writeManifests([v1beta1Model(), configMap, v1beta1Device()]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.notes).toEqual([{ file, index: 1, note: expect.stringMatching(/skipped ConfigMap \(v1\)/) }]);
    expect([...catalog.devices.keys()]).toEqual(['default/meter-01']);
    expect([...catalog.models.keys()]).toEqual(['default/meter-model']);
  });

  it('ignores empty documents', () => {
    const file = writeManifests(['# only a comment\n', v1beta1Model(), '']);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    expect(catalog.notes).toEqual([]);
    expect(catalog.models.size).toBe(1);
  });
});

describe('invalid manifests', () => {
  // Every file: document 0 a valid model, document 1 the case, document 2 a valid device.
  const cases: Array<{ name: string; doc: object | string; path: string; reason: RegExp }> = [
    {
      name: 'wrong type (string cycle, v1beta1)',
      doc: v1beta1Device('bad', 'meter-model', { properties: [{ name: 'power', collectCycle: 'fast' }] }),
      path: 'spec.properties.0.collectCycle',
      reason: /expected number, received "fast"/,
    },
    {
      name: 'wrong type (boolean reportToCloud given as a string)',
      doc: v1beta1Device('bad', 'meter-model', { properties: [{ name: 'power', reportToCloud: 'yes' }] }),
      path: 'spec.properties.0.reportToCloud',
      reason: /expected boolean, received "yes"/,
    },
    {
      name: 'wrong type (negative cycle, v1alpha2)',
      doc: { ...v1alpha2Device('bad', {}), spec: { deviceModelRef: { name: 'meter-model' }, propertyVisitors: [{ propertyName: 'power', collectCycle: -5 }] } },
      path: 'spec.propertyVisitors.0.collectCycle',
      reason: /expected >=0, received -/,
    },
    {
      name: 'missing deviceModelRef (v1beta1)',
      doc: { apiVersion: 'devices.kubeedge.io/v1beta1', kind: 'Device', metadata: { name: 'bad' }, spec: { protocol: { protocolName: 'modbus' } } },
      path: 'spec.deviceModelRef',
      reason: /^required$/,
    },
    {
      name: 'missing deviceModelRef (v1alpha2)',
      doc: { apiVersion: 'devices.kubeedge.io/v1alpha2', kind: 'Device', metadata: { name: 'bad' }, spec: {} },
      path: 'spec.deviceModelRef',
      reason: /^required$/,
    },
    {
      name: 'unknown property type (v1beta1)',
      doc: { ...v1beta1Model('other-model'), spec: { properties: [{ name: 'x', type: 'INTEGER' }] } },
      path: 'spec.properties.0.type',
      reason: /must be one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM/,
    },
    {
      name: 'unknown property type (v1alpha2)',
      doc: { ...v1alpha2Model('other-model'), spec: { properties: [{ name: 'x', type: { integer: {} } }] } },
      path: 'spec.properties.0.type',
      reason: /integer/,
    },
    {
      name: 'two property types (v1alpha2)',
      doc: { ...v1alpha2Model('other-model'), spec: { properties: [{ name: 'x', type: { int: {}, string: {} } }] } },
      path: 'spec.properties.0.type',
      reason: /exactly one of int, string, double, float, boolean, bytes/,
    },
    {
      name: 'bad YAML',
      doc: 'apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: broken\n  spec: : x\n',
      path: '',
      reason: /^YAML: /,
    },
    {
      name: 'model not defined',
      doc: v1beta1Device('orphan', 'no-such-model'),
      path: 'spec.deviceModelRef.name',
      reason: /DeviceModel default\/no-such-model is not defined/,
    },
    {
      name: 'property not in model',
      doc: v1beta1Device('extra', 'meter-model', { properties: [{ name: 'power' }, { name: 'humidity' }] }),
      path: 'spec.properties',
      reason: /property humidity is not defined by DeviceModel default\/meter-model/,
    },
    {
      name: 'duplicate',
      doc: v1beta1Model(),
      path: 'metadata.name',
      reason: /DeviceModel default\/meter-model is already defined in .*manifests-.*\.yaml document 0/,
    },
    {
      name: 'unsupported API version',
      doc: { ...v1beta1Device('bad'), apiVersion: 'devices.kubeedge.io/v1alpha1' },
      path: 'apiVersion',
      reason: /unsupported version devices\.kubeedge\.io\/v1alpha1/,
    },
    {
      name: 'name that is not DNS-1123',
      doc: v1beta1Device('Bad_Name'),
      path: 'metadata.name',
      reason: /DNS-1123/,
    },
    {
      name: 'not a Kubernetes object',
      doc: '- just\n- a list\n',
      path: '',
      reason: /apiVersion and kind are required/,
    },
  ];

  it.each(cases)('$name: error names file, document, path and reason; the valid documents still load', ({ doc, path, reason }) => {
    const file = writeManifests([v1beta1Model(), doc, v1beta1Device('good')]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors.length).toBeGreaterThan(0);
    for (const error of catalog.errors) {
      expect(error.file).toBe(file);
      expect(error.index).toBe(1);
    }
    expect(catalog.errors).toContainEqual({ file, index: 1, path, reason: expect.stringMatching(reason) });
    expect(formatError(catalog.errors.find((e) => e.path === path)!)).toMatch(new RegExp(`^${file}: document 1: ${path || '\\(root\\)'}: `));
    expect([...catalog.models.keys()]).toEqual(['default/meter-model']);
    expect([...catalog.devices.keys()]).toEqual(['default/good']);
  });

  it('a device whose model failed validation is reported as referring to an undefined model', () => {
    const badModel = { ...v1beta1Model(), spec: { properties: [{ name: 'power', type: 'complex' }] } };
    const file = writeManifests([badModel, v1beta1Device()]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([
      { file, index: 0, path: 'spec.properties.0.type', reason: expect.any(String) },
      { file, index: 1, path: 'spec.deviceModelRef.name', reason: 'DeviceModel default/meter-model is not defined' },
    ]);
    expect(catalog.devices.size).toBe(0);
  });

  it('a duplicate across files keeps the first definition', () => {
    const first = writeManifests([v1beta1Model(), v1beta1Device()], 'a-first.yaml');
    const second = writeManifests([v1beta1Device()], 'b-second.yaml');
    const catalog = loadCatalog([first, second]);
    expect(catalog.errors).toEqual([{ file: second, index: 0, path: 'metadata.name', reason: `Device default/meter-01 is already defined in ${first} document 1` }]);
    expect(catalog.devices.get('default/meter-01')!.source).toEqual({ file: first, index: 1 });
  });

  it('a missing path is an error naming it', () => {
    const missing = join(work, 'does-not-exist');
    const catalog = loadCatalog([missing]);
    expect(catalog.errors).toEqual([{ file: missing, index: 0, path: '', reason: expect.stringMatching(/ENOENT/) }]);
  });
});

describe('visitors the built-in mappers refuse', () => {
  const REGISTERS = 'must be CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister';
  /** A meter whose `power` reads a register type that does not exist. */
  const badRegister = (name = 'bad') =>
    v1beta1Device(name, 'meter-model', {
      properties: [
        { name: 'power', visitors: { protocolName: 'modbus', configData: { register: 'HoldingRegisters', offset: 2 } } },
        { name: 'relay', visitors: { configData: { register: 'CoilRegister', offset: 0 } } },
      ],
    });

  it('names the v1beta1 visitor field at its file and document; the valid device has none', () => {
    const file = writeManifests([v1beta1Model(), badRegister(), v1beta1Device('good')]);
    const catalog = loadCatalog([file]);
    expect(catalog.errors).toEqual([]);
    const errors = validateVisitors(catalog, builtinMappers);
    expect(errors).toEqual([{ file, index: 1, path: 'spec.properties.0.visitors.configData.register', reason: REGISTERS }]);
    expect(formatError(errors[0]!)).toBe(`${file}: document 1: spec.properties.0.visitors.configData.register: ${REGISTERS}`);
  });

  it('names v1alpha2 fields: the protocol block, common, the visitor block, and a property without a visitor', () => {
    const file = writeManifests([
      v1alpha2Model(),
      v1alpha2Device('lamp-bad', {
        protocol: { modbus: { slaveID: 300 }, common: { tcp: { ip: '' } } },
        propertyVisitors: [{ propertyName: 'brightness', modbus: { register: 'Holding', offset: 1 } }],
      }, { twins: [{ propertyName: 'on', reported: { value: 'true' } }] }),
    ]);
    const errors = validateVisitors(loadCatalog([file]), builtinMappers);
    expect(errors.map((e) => [e.index, e.path, e.reason])).toEqual([
      [1, 'spec.protocol.common.tcp.ip', 'expected >=1, received 0'],
      [1, 'spec.protocol.modbus.slaveID', 'expected <=247, received 300'],
      [1, 'spec.propertyVisitors.0.modbus.register', REGISTERS],
      [1, 'spec.propertyVisitors', 'property on has no visitor (register: required; offset: required)'],
    ]);
  });

  it('leaves devices whose protocol has no built-in mapper to whoever serves them', () => {
    const file = writeManifests([v1alpha2Model(), v1alpha2Device('lamp-1', { propertyVisitors: [{ propertyName: 'on', opcua: { nodeID: 'ns=2;i=3' } }] })]);
    expect(validateVisitors(loadCatalog([file]), builtinMappers)).toEqual([]);
  });

  it('passes the upstream sample pairs, but the e2e bluetooth device, which has no address', () => {
    const refused = Object.fromEntries(
      pairs
        .map((p) => [p.device.file, validateVisitors(loadPair(p.device.file, p.model.file), builtinMappers).map((e) => `${e.path}: ${e.reason}`)] as const)
        .filter(([, errors]) => errors.length > 0),
    );
    // A mock BLE device with no address at all; the temperature sample's one-register `float`
    // and `int` coil read as KubeEdge reads them (test/mappers/modbus-kubeedge.test.ts serves it).
    expect(refused).toEqual({
      'kubeedge__mappers-go__tests__e2e__mapper__bluetooth__crds__deviceinstance.yaml': ['spec.protocol: needs macAddress (or localName) to find the device'],
    });
  });
});

// ---------------------------------------------------------------------------------------------
// `edge-agent validate`
// ---------------------------------------------------------------------------------------------

describe('edge-agent validate', () => {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with \`npx tsc -p tsconfig.json\``);
  });

  const validate = (...paths: string[]) => {
    const run = spawnSync(process.execPath, [CLI, 'validate', ...paths], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    return { code: run.status, stdout: run.stdout, stderr: run.stderr };
  };

  it('exits 0 on device-profiles/', () => {
    const { code, stdout, stderr } = validate('device-profiles/');
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^\d+ devices, \d+ device models valid; 0 errors$/m);
    expect(code).toBe(0);
  });

  it('exits 0 on the test profiles', () => {
    const { code, stdout } = validate(join(ROOT, 'test/fixtures/profiles'));
    expect(stdout).toMatch(/; 0 errors$/m);
    expect(code).toBe(0);
  });

  it('exits 0 on a valid directory (nested, with a skipped ConfigMap noted)', () => {
    const dir = join(work, 'valid-dir');
    mkdirSync(join(dir, 'nested'), { recursive: true });
    writeFileSync(join(dir, 'models.yaml'), yaml.dump(v1beta1Model()));
    writeFileSync(join(dir, 'nested', 'devices.yml'), [v1beta1Device('m1'), v1beta1Device('m2'), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }].map((d) => yaml.dump(d)).join('---\n'));
    writeFileSync(join(dir, 'README.txt'), 'not yaml: [');
    const { code, stdout, stderr } = validate(dir);
    expect(stderr).toBe('');
    expect(stdout).toContain(`note: ${join(dir, 'nested', 'devices.yml')}: document 2: skipped ConfigMap`);
    expect(stdout).toContain('2 devices, 1 device models valid; 0 errors');
    expect(code).toBe(0);
  });

  it('exits 0 on an upstream sample pair given as files', () => {
    const pair = pairs[0]!;
    const { code } = validate(join(SAMPLES, pair.device.file), join(SAMPLES, pair.model.file));
    expect(code).toBe(0);
  });

  it("exits 0 on KubeEdge's temperature-sensor demo (a one-register `float`, an `int` coil)", () => {
    const { code, stderr } = validate(
      join(SAMPLES, 'kubeedge__examples__temperature-sensor-demo__crds__temperature-instance.yaml'),
      join(SAMPLES, 'kubeedge__examples__temperature-sensor-demo__crds__temperature-model.yaml'),
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('exits non-zero and prints the error on an invalid file', () => {
    const file = writeManifests([v1beta1Model(), v1beta1Device('bad', 'meter-model', { properties: [{ name: 'power', collectCycle: 'fast' }] }), v1beta1Device('good')]);
    const { code, stdout, stderr } = validate(file);
    expect(stderr).toContain(`error: ${file}: document 1: spec.properties.0.collectCycle: expected number, received "fast"`);
    expect(stdout).toContain('1 devices, 1 device models valid; 1 errors');
    expect(code).not.toBe(0);
  });

  it('exits 1 on a visitor its mapper refuses, naming file, document and field as for manifest errors', () => {
    const file = writeManifests([
      v1beta1Model(),
      v1beta1Device('bad', 'meter-model', { properties: [{ name: 'power', visitors: { configData: { register: 'HoldingRegisters', offset: 2 } } }] }),
      v1beta1Device('good'),
    ]);
    const { code, stdout, stderr } = validate(file);
    expect(stderr).toBe(`error: ${file}: document 1: spec.properties.0.visitors.configData.register: must be CoilRegister, DiscreteInputRegister, HoldingRegister or InputRegister\n`);
    expect(stdout).toContain('1 devices, 1 device models valid; 1 errors');
    expect(code).toBe(1);
  });

  it('exits non-zero on bad YAML and on a device without its model', () => {
    const broken = join(work, 'broken.yaml');
    writeFileSync(broken, 'kind: [\n');
    const orphan = writeManifests([v1beta1Device('orphan', 'no-such-model')]);
    const { code, stderr } = validate(broken, orphan);
    expect(stderr).toMatch(new RegExp(`error: ${broken}: document 0: \\(root\\): YAML: `));
    expect(stderr).toContain(`error: ${orphan}: document 0: spec.deviceModelRef.name: DeviceModel default/no-such-model is not defined`);
    expect(code).not.toBe(0);
  });

  it('exits non-zero on a missing path and with usage when no path is given', () => {
    expect(validate(join(work, 'nope')).code).not.toBe(0);
    const usage = validate();
    expect(usage.stderr).toContain('validate needs at least one PATH');
    expect(usage.code).not.toBe(0);
  });
});
