/** The one internal model that both KubeEdge API versions (v1alpha2, v1beta1) are turned into. */

export type PropertyType = 'int' | 'float' | 'double' | 'string' | 'boolean' | 'bytes' | 'stream';
export type AccessMode = 'ReadWrite' | 'ReadOnly' | 'WriteOnly';

export interface ModelProperty {
  name: string;
  description?: string;
  type: PropertyType;
  accessMode: AccessMode;
  minimum?: number;
  maximum?: number;
  unit?: string;
  defaultValue?: string;
}

export interface DeviceModel {
  /** `{namespace}/{name}` */
  id: string;
  namespace: string;
  name: string;
  apiVersion: string;
  protocol?: string;
  properties: ModelProperty[];
}

/** A value as the twin holds it: KubeEdge twins carry every value as a string. */
export interface SeedValue {
  value: string;
  type?: string;
}

export interface DeviceProperty {
  name: string;
  /** Protocol-specific visitor configuration (register, offset, characteristic UUID, …). */
  visitor: Record<string, unknown>;
  collectCycleMs?: number;
  reportCycleMs?: number;
  reportToCloud: boolean;
  desired?: SeedValue;
  /** v1beta1 `pushMethod` (with `dbMethod`), which only a DMI mapper acts on. */
  pushMethod?: Record<string, unknown>;
}

/** v1beta1 `spec.methods`: named groups of properties a DMI mapper serves. */
export interface DeviceMethod {
  name: string;
  description?: string;
  propertyNames?: string[];
}

export interface DeviceProtocol {
  name: string;
  config: Record<string, unknown>;
  common?: Record<string, unknown>;
}

/**
 * Where a Device's protocol-specific blocks sit in its manifest, as dotted paths like those of
 * manifest errors, so that a mapper's complaint about one of them names the field.
 */
export interface DeviceFields {
  /** The protocol's configuration: `spec.protocol.configData` (v1beta1), `spec.protocol.modbus` (v1alpha2), … */
  protocol: string;
  /** v1alpha2 `spec.protocol.common`. */
  common?: string;
  /** The list of properties: `spec.properties` (v1beta1) or `spec.propertyVisitors` (v1alpha2). */
  properties: string;
  /** Each property's visitor by property name; v1alpha2 properties listed only in `status.twins` have none. */
  visitors: Record<string, string>;
}

export interface Device {
  /** `{namespace}/{name}` */
  id: string;
  namespace: string;
  name: string;
  apiVersion: string;
  modelId: string;
  /** The node that manages this device; undefined means any node (ours). */
  nodeName?: string;
  description?: string;
  labels: Record<string, string>;
  protocol: DeviceProtocol;
  properties: DeviceProperty[];
  /** Reported values carried in a manifest's status, used only to seed an empty twin. */
  reported: Record<string, SeedValue>;
  fields: DeviceFields;
  /** v1beta1 `spec.methods`, passed through to DMI mappers. */
  methods?: DeviceMethod[];
  /** v1beta1 `spec.stateReport`: how often a DMI mapper reports the device's state, and whether to the cloud. */
  stateReport?: { reportCycle?: number; reportToCloud?: boolean };
}

export interface ManifestSource {
  file: string;
  /** 0-based index of the YAML document inside the file. */
  index: number;
}

export function deviceId(namespace: string | undefined, name: string): string {
  return `${namespace || 'default'}/${name}`;
}

/** The namespace and name of a `{namespace}/{name}` id. */
export function splitId(id: string): { namespace: string; name: string } {
  const slash = id.indexOf('/');
  return { namespace: id.slice(0, slash), name: id.slice(slash + 1) };
}
