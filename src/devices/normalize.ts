/** Turns parsed v1alpha2 and v1beta1 manifests into the one internal model. */
import type { Device, DeviceModel, DeviceProperty, PropertyType, SeedValue } from './model.js';
import { deviceId } from './model.js';
import type { DeviceModelV1alpha2, DeviceModelV1beta1, DeviceV1alpha2, DeviceV1beta1 } from './schema.js';

const NANOS_PER_MS = 1_000_000;

/**
 * Upstream samples give cycles both in milliseconds (10000) and as Go durations in
 * nanoseconds (1000000000). No sane cycle is a million milliseconds or more, so such
 * values are read as nanoseconds.
 */
export function cycleToMs(cycle: number | undefined): number | undefined {
  if (!cycle) return undefined;
  return cycle >= NANOS_PER_MS ? cycle / NANOS_PER_MS : cycle;
}

function seedsFromStatus(status: DeviceV1alpha2['status'] | DeviceV1beta1['status']): {
  names: string[];
  desired: Record<string, SeedValue>;
  reported: Record<string, SeedValue>;
} {
  const desired: Record<string, SeedValue> = {};
  const reported: Record<string, SeedValue> = {};
  const names: string[] = [];
  for (const twin of status?.twins ?? []) {
    names.push(twin.propertyName);
    if (twin.desired?.value !== undefined) desired[twin.propertyName] = { value: twin.desired.value, type: twin.desired.metadata?.type };
    if (twin.reported?.value !== undefined) reported[twin.propertyName] = { value: twin.reported.value, type: twin.reported.metadata?.type };
  }
  return { names, desired, reported };
}

/** What every manifest has: its id `{namespace}/{name}`, namespace `default` when absent. */
function identity(m: { apiVersion: string; metadata: { name: string; namespace?: string } }) {
  const namespace = m.metadata.namespace || 'default';
  return { id: deviceId(namespace, m.metadata.name), namespace, name: m.metadata.name, apiVersion: m.apiVersion };
}

export function modelFromV1alpha2(m: DeviceModelV1alpha2): DeviceModel {
  return {
    ...identity(m),
    properties: m.spec.properties.map((p) => {
      const [type, spec] = Object.entries(p.type).find(([, v]) => v) as [PropertyType, NonNullable<(typeof p.type)['int']>];
      return {
        name: p.name,
        description: p.description,
        type,
        accessMode: spec.accessMode,
        minimum: spec.minimum,
        maximum: spec.maximum,
        unit: spec.unit,
        defaultValue: spec.defaultValue === undefined ? undefined : String(spec.defaultValue),
      };
    }),
  };
}

export function modelFromV1beta1(m: DeviceModelV1beta1): DeviceModel {
  return {
    ...identity(m),
    protocol: m.spec.protocol,
    properties: m.spec.properties.map((p) => ({
      name: p.name,
      description: p.description,
      type: p.type,
      accessMode: p.accessMode,
      minimum: p.minimum,
      maximum: p.maximum,
      unit: p.unit,
    })),
  };
}

type Alpha2Spec = DeviceV1alpha2['spec'];
const VISITOR_FIELDS = new Set(['propertyName', 'collectCycle', 'reportCycle']);

/**
 * v1alpha2 names the protocol by the key it uses (modbus, bluetooth, opcua or
 * customizedProtocol); upstream samples omit the protocol block and leave it to the visitors.
 * `at` is where the configuration sits in the manifest.
 */
function alpha2Protocol(spec: Alpha2Spec): { name: string; config: Record<string, unknown>; at: string } {
  const declaredCustom = spec.protocol?.customizedProtocol;
  if (declaredCustom) return { name: declaredCustom.protocolName, config: declaredCustom.configData ?? {}, at: 'spec.protocol.customizedProtocol.configData' };
  const declared = Object.entries(spec.protocol ?? {}).find(([key, value]) => key !== 'common' && key !== 'customizedProtocol' && value !== undefined);
  if (declared) return { name: declared[0], config: (declared[1] ?? {}) as Record<string, unknown>, at: `spec.protocol.${declared[0]}` };
  const visitorCustom = spec.propertyVisitors.find((v) => v.customizedProtocol)?.customizedProtocol;
  if (visitorCustom) return { name: visitorCustom.protocolName, config: {}, at: 'spec.protocol' };
  const fromVisitor = spec.propertyVisitors.flatMap((v) => Object.keys(v).filter((key) => !VISITOR_FIELDS.has(key)))[0];
  return { name: fromVisitor ?? '', config: {}, at: 'spec.protocol' };
}

/** The visitor's protocol block, and where it sits inside the visitor: `modbus`, `customizedProtocol.configData`, or '' when it has none. */
function alpha2Visitor(visitor: DeviceV1alpha2['spec']['propertyVisitors'][number]): { config: Record<string, unknown>; at: string } {
  if (visitor.customizedProtocol) return { config: visitor.customizedProtocol.configData ?? {}, at: 'customizedProtocol.configData' };
  const block = Object.entries(visitor).find(([key, value]) => !VISITOR_FIELDS.has(key) && value && typeof value === 'object');
  return block ? { config: block[1] as Record<string, unknown>, at: block[0] } : { config: {}, at: '' };
}

/** v1alpha2 places a device on a node through a nodeSelector whose values name the node. */
function alpha2NodeName(spec: Alpha2Spec): string | undefined {
  const values = spec.nodeSelector?.nodeSelectorTerms.flatMap((t) => t.matchExpressions.flatMap((e) => e.values)) ?? [];
  return values[0];
}

export function deviceFromV1alpha2(d: DeviceV1alpha2): Device {
  const namespace = d.metadata.namespace || 'default';
  const { names: twinNames, desired, reported } = seedsFromStatus(d.status);
  const { at: protocolAt, ...protocol } = alpha2Protocol(d.spec);
  const labels = d.metadata.labels ?? {};
  const visitors = new Map(
    d.spec.propertyVisitors.map((visitor, index) => {
      const block = alpha2Visitor(visitor);
      return [visitor.propertyName, { visitor, config: block.config, at: [`spec.propertyVisitors.${index}`, block.at].filter(Boolean).join('.') }];
    }),
  );
  const names = new Set([...visitors.keys(), ...twinNames]);
  const properties: DeviceProperty[] = [...names].map((propertyName) => {
    const visitor = visitors.get(propertyName);
    return {
      name: propertyName,
      visitor: visitor?.config ?? {},
      collectCycleMs: cycleToMs(visitor?.visitor.collectCycle),
      reportCycleMs: cycleToMs(visitor?.visitor.reportCycle),
      reportToCloud: true,
      desired: desired[propertyName],
    };
  });
  return {
    ...identity(d),
    modelId: deviceId(namespace, d.spec.deviceModelRef.name),
    nodeName: alpha2NodeName(d.spec),
    description: labels.description,
    labels,
    protocol: { ...protocol, common: d.spec.protocol?.common ?? undefined },
    properties,
    reported,
    fields: {
      protocol: protocolAt,
      common: 'spec.protocol.common',
      properties: 'spec.propertyVisitors',
      visitors: Object.fromEntries([...visitors].map(([name, v]) => [name, v.at])),
    },
  };
}

export function deviceFromV1beta1(d: DeviceV1beta1): Device {
  const namespace = d.metadata.namespace || 'default';
  const { reported } = seedsFromStatus(d.status);
  const labels = d.metadata.labels ?? {};
  return {
    ...identity(d),
    modelId: deviceId(namespace, d.spec.deviceModelRef.name),
    nodeName: d.spec.nodeName || undefined,
    description: labels.description,
    labels,
    protocol: { name: d.spec.protocol.protocolName, config: d.spec.protocol.configData ?? {} },
    properties: d.spec.properties.map((p) => ({
      name: p.name,
      visitor: p.visitors?.configData ?? {},
      collectCycleMs: cycleToMs(p.collectCycle),
      reportCycleMs: cycleToMs(p.reportCycle),
      reportToCloud: p.reportToCloud,
      desired: p.desired?.value === undefined ? undefined : { value: p.desired.value, type: p.desired.metadata?.type },
      pushMethod: p.pushMethod ?? undefined,
    })),
    methods: d.spec.methods ?? undefined,
    stateReport: d.spec.stateReport ?? undefined,
    reported,
    fields: {
      protocol: 'spec.protocol.configData',
      properties: 'spec.properties',
      visitors: Object.fromEntries(d.spec.properties.map((p, index) => [p.name, `spec.properties.${index}.visitors.configData`])),
    },
  };
}
