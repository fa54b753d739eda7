/**
 * The BLE mapper (protocol `bluetooth`): GATT devices as KubeEdge's bluetooth mapper describes
 * them (characteristicUUID, dataWrite, dataConverter), followed through notifications where the
 * characteristic offers them, and advertisement-only sensors (BTHome v2, ATC/pvvx) read without
 * connecting. noble is loaded when the first BLE device connects.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { DeviceConnection, Mapper, MapperContext } from '../../src/mapperhost/contract.js';
import { ConfigError } from '../../src/schema.js';
import { FORMATS } from './advertisement.js';
import { parseProtocol, parseVisitor, type AdvertisementVisitor, type GattVisitor } from './config.js';
import { BleDeviceConnection, type Bound } from './connection.js';
import { controllerFor, type Match } from './controller.js';
import { openGatt } from './gatt.js';

/** How long a connect waits for the device's advertisement before calling it unreachable. */
const FIND_TIMEOUT_MS = 30_000;
/** Three missed advertisements of a sensor that sends one a minute. */
const DEFAULT_ADVERTISEMENT_TIMEOUT_MS = 180_000;

function bindProperties(device: Device, model: DeviceModel): { gatt: Array<Bound<GattVisitor>>; adverts: Array<Bound<AdvertisementVisitor>> } {
  const modelProperties = new Map(model.properties.map((p) => [p.name, p]));
  const gatt: Array<Bound<GattVisitor>> = [];
  const adverts: Array<Bound<AdvertisementVisitor>> = [];
  for (const property of device.properties) {
    const modelProperty = modelProperties.get(property.name);
    // Twin-only properties (listed in status.twins without a visitor) have nothing to read.
    if (!modelProperty || Object.keys(property.visitor).length === 0) continue;
    const visitor = parseVisitor(device.id, property.name, property.visitor);
    if (visitor.kind === 'gatt') {
      gatt.push({ name: property.name, visitor, model: modelProperty });
      continue;
    }
    if (!FORMATS[visitor.advertisement].measurements.has(visitor.measurement)) {
      throw new ConfigError(`device ${device.id} property ${property.name}: ${visitor.advertisement} has no measurement ${JSON.stringify(visitor.measurement)}`);
    }
    adverts.push({ name: property.name, visitor, model: modelProperty });
  }
  return { gatt, adverts };
}

export const bleMapper: Mapper = {
  protocols: ['bluetooth'],
  async connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection> {
    const protocol = parseProtocol(device.id, device.protocol.config);
    const { gatt, adverts } = bindProperties(device, model);
    const match: Match = protocol.macAddress !== undefined ? { address: protocol.macAddress } : { localName: protocol.localName };
    const controller = await controllerFor(protocol.adapter, context.log);
    const session = gatt.length > 0 ? await openGatt(controller, match, new Set(gatt.map((p) => p.visitor.characteristicUUID)), FIND_TIMEOUT_MS) : undefined;
    const connection = new BleDeviceConnection(match, gatt, adverts, protocol.advertisementTimeout ?? DEFAULT_ADVERTISEMENT_TIMEOUT_MS, context, session);
    try {
      await connection.start(controller);
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
    context.log.info({ controller: controller.name, device: match.address ?? match.localName, gatt: gatt.length, advertised: adverts.length }, 'bluetooth device connected');
    return connection;
  },
};
