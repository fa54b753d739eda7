/**
 * Devices and models as EdgeCore hands them to a DMI mapper (dtcommon/util.go ConvertDevice,
 * ConvertDeviceModel): every property carries a `desired` message (an empty value when there is
 * none) and `visitors.configData`, because mapper-framework dereferences both without checking;
 * config values are packed as `Any`; `pushMethod` and `methods` pass through.
 */
import { splitId, type Device, type DeviceModel, type ModelProperty } from '../devices/model.js';
import type { DeviceRecord } from '../twin/types.js';
import { fromGoJson } from './go-json.js';
import { messageType } from './proto.js';

const DEVICE = messageType('v1beta1.Device');
const MODEL = messageType('v1beta1.DeviceModel');

/** The v1beta1 CRD's enum spelling of a property type, which mappers lower-case themselves. */
const crdType = (type: ModelProperty['type']) => type.toUpperCase();

/** Twin type names for a desired value's metadata, as the twin keeps them. */
function twinType(type: ModelProperty['type']): string {
  return type === 'double' ? 'float' : type === 'int' || type === 'float' || type === 'boolean' ? type : 'string';
}

/** The DMI Device message; throws (naming the field) what EdgeCore's conversion would refuse. */
export function dmiDevice(device: Device, model: DeviceModel | undefined, twin: DeviceRecord | undefined): Record<string, unknown> {
  const types = new Map(model?.properties.map((p) => [p.name, p.type]));
  const json = {
    name: device.name,
    namespace: device.namespace,
    spec: {
      deviceModelReference: splitId(device.modelId).name,
      protocol: { protocolName: device.protocol.name, configData: { data: device.protocol.config } },
      properties: device.properties.map((property) => {
        const expected = twin?.twin.get(property.name)?.expected;
        const type = types.get(property.name);
        return {
          name: property.name,
          desired: {
            value: expected?.value ?? '',
            metadata: expected ? { timestamp: String(expected.timestamp), ...(type ? { type: twinType(type) } : {}) } : {},
          },
          visitors: { protocolName: device.protocol.name, configData: { data: property.visitor } },
          reportCycle: property.reportCycleMs ?? 0,
          collectCycle: property.collectCycleMs ?? 0,
          reportToCloud: property.reportToCloud,
          pushMethod: property.pushMethod,
        };
      }),
      methods: device.methods,
    },
    status: device.stateReport ? { reportCycle: device.stateReport.reportCycle ?? 0, reportToCloud: device.stateReport.reportToCloud ?? false } : undefined,
  };
  return fromGoJson(DEVICE, json, device.id);
}

/** The DMI DeviceModel message: accessMode is `ReadOnly` or `ReadWrite` (a write-only property is written, so ReadWrite). */
export function dmiModel(model: DeviceModel): Record<string, unknown> {
  const json = {
    name: model.name,
    namespace: model.namespace,
    spec: {
      properties: model.properties.map((p) => ({
        name: p.name,
        description: p.description ?? '',
        type: crdType(p.type),
        accessMode: p.accessMode === 'ReadOnly' ? 'ReadOnly' : 'ReadWrite',
        minimum: p.minimum === undefined ? '' : String(p.minimum),
        maximum: p.maximum === undefined ? '' : String(p.maximum),
        unit: p.unit ?? '',
      })),
    },
  };
  return fromGoJson(MODEL, json, model.id);
}
