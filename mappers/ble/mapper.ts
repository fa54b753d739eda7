/**
 * The BLE mapper (protocol `bluetooth`): GATT devices as KubeEdge's bluetooth mapper describes
 * them (characteristicUUID, dataWrite, dataConverter), followed through notifications where the
 * characteristic offers them, and advertisement-only sensors (BTHome v2, ATC/pvvx) read without
 * connecting. noble is loaded when the first BLE device connects.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { DeviceConnection, Mapper, MapperContext } from '../../src/mapperhost/contract.js';
import { describeIssues, valueOrThrow } from '../../src/mapperhost/device-config.js';
import { parseBle, type AdvertisementVisitor, type GattVisitor } from './config.js';
import { BleDeviceConnection, type Bound } from './connection.js';
import { controllerFor, type Match } from './controller.js';
import { openGatt } from './gatt.js';

/** How long a connect waits for the device's advertisement before calling it unreachable. */
const FIND_TIMEOUT_MS = 30_000;
/** Three missed advertisements of a sensor that sends one a minute. */
const DEFAULT_ADVERTISEMENT_TIMEOUT_MS = 180_000;

export const bleMapper: Mapper = {
  protocols: ['bluetooth'],
  validate: (device, model) => describeIssues(parseBle(device, model)),
  async connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection> {
    const { protocol, visitors } = valueOrThrow(parseBle(device, model));
    const gatt: Array<Bound<GattVisitor>> = [];
    const adverts: Array<Bound<AdvertisementVisitor>> = [];
    for (const [name, { visitor, model: property }] of visitors) {
      if (visitor.kind === 'gatt') gatt.push({ name, visitor, model: property });
      else adverts.push({ name, visitor, model: property });
    }
    const match: Match = protocol.macAddress !== undefined ? { address: protocol.macAddress } : { localName: protocol.localName };
    const controller = await controllerFor(context.transports, protocol.adapter, context.log);
    let connection: BleDeviceConnection | undefined;
    try {
      const session = gatt.length > 0 ? await openGatt(controller.transport, match, new Set(gatt.map((p) => p.visitor.characteristicUUID)), FIND_TIMEOUT_MS) : undefined;
      connection = new BleDeviceConnection(match, gatt, adverts, protocol.advertisementTimeout ?? DEFAULT_ADVERTISEMENT_TIMEOUT_MS, context, controller, session);
      await connection.start();
    } catch (error) {
      if (connection) await connection.close().catch(() => undefined);
      else await controller.release();
      throw error;
    }
    context.log.info({ controller: controller.transport.name, device: match.address ?? match.localName, gatt: gatt.length, advertised: adverts.length }, 'bluetooth device connected');
    return connection;
  },
};
