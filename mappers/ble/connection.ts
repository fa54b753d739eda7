/**
 * One BLE device as the mapper host sees it: GATT properties read, written and followed through
 * notifications over a connection; advertised properties taken from the device's advertisements.
 * Either kind pushes a value as soon as the device sends it; a read between two of them answers
 * from the last one instead of asking the device again.
 */
import type { Characteristic, Peripheral } from '@abandonware/noble';
import type { ModelProperty } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import { DeviceUnreachableError } from '../../src/mapperhost/contract.js';
import type { Lease } from '../../src/mapperhost/transports.js';
import { FORMATS, measurementOf } from './advertisement.js';
import { decodeValue, encodeValue } from './codec.js';
import type { AdvertisementVisitor, GattVisitor } from './config.js';
import type { BleController, Match } from './controller.js';
import { describeMatch } from './controller.js';
import type { GattSession } from './gatt.js';
import { withTimeout } from '../../src/timeout.js';

/**
 * Below the host's 5 s read/write timeout, to name the cause: noble never settles a write or a
 * subscription the device answers with an ATT error, so the promise would hang.
 */
const GATT_TIMEOUT_MS = 4000;

export interface Bound<V> {
  name: string;
  visitor: V;
  model: ModelProperty;
}

interface Advertised {
  value: PropertyValue;
  /** Monotonic (performance.now()): a wall-clock step must not make a fresh value stale, nor keep a stale one. */
  at: number;
}

export class BleDeviceConnection implements DeviceConnection {
  private readonly subscribed = new Set<string>();
  /** The last value of each subscribed characteristic, notified (or read once before the first notification). */
  private readonly latest = new Map<string, Buffer>();
  private readonly advertised = new Map<string, Advertised>();
  private readonly lastPacket = new Map<string, number>();
  private readonly warned = new Set<string>();
  private stopListening?: () => void;
  private closed = false;
  private readonly onDisconnect = () => {
    if (!this.closed) this.context.lost(new DeviceUnreachableError(`${describeMatch(this.match)} disconnected`));
  };

  constructor(
    private readonly match: Match,
    private readonly gatt: Array<Bound<GattVisitor>>,
    private readonly adverts: Array<Bound<AdvertisementVisitor>>,
    private readonly advertisementTimeoutMs: number,
    private readonly context: MapperContext,
    /** The shared controller, let go of when the connection closes. */
    private readonly controller: Lease<BleController>,
    private readonly session?: GattSession,
  ) {}

  /** Listens for advertisements and subscribes to the characteristics that notify. */
  async start(): Promise<void> {
    if (this.adverts.length > 0) this.stopListening = this.controller.transport.listen(this.match, (p) => this.receiveAdvertisement(p));
    if (!this.session) return;
    this.session.peripheral.once('disconnect', this.onDisconnect);
    for (const property of this.gatt) {
      const { characteristicUUID: uuid, subscribe } = property.visitor;
      const characteristic = this.characteristic(uuid);
      const notifies = characteristic.properties.includes('notify') || characteristic.properties.includes('indicate');
      if (!(subscribe ?? notifies) || property.model.accessMode === 'WriteOnly' || this.subscribed.has(uuid)) continue;
      if (!notifies) throw new Error(`property ${property.name}: characteristic ${uuid} neither notifies nor indicates`);
      characteristic.on('data', (data: Buffer, isNotification: boolean) => {
        if (isNotification) this.receiveNotification(uuid, data);
      });
      await withTimeout(characteristic.subscribeAsync(), GATT_TIMEOUT_MS, () => new Error(`property ${property.name}: subscribing to ${uuid} was not acknowledged within ${GATT_TIMEOUT_MS / 1000} s`));
      this.subscribed.add(uuid);
    }
  }

  private characteristic(uuid: string): Characteristic {
    const characteristic = this.session?.characteristics.get(uuid);
    if (!characteristic) throw new Error(`characteristic ${uuid} is not connected`);
    return characteristic;
  }

  private receiveNotification(uuid: string, data: Buffer): void {
    this.latest.set(uuid, data);
    for (const property of this.gatt) {
      if (property.visitor.characteristicUUID !== uuid) continue;
      this.pushDecoded(property.name, () => decodeValue(data, property.visitor, property.model.type));
    }
  }

  private receiveAdvertisement(peripheral: Peripheral): void {
    const now = performance.now();
    for (const [format, spec] of Object.entries(FORMATS)) {
      const properties = this.adverts.filter((p) => p.visitor.advertisement === format);
      const data = properties.length > 0 ? peripheral.advertisement.serviceData?.find((d) => d.uuid === spec.uuid)?.data : undefined;
      if (!data) continue;
      let decoded;
      try {
        decoded = spec.decode(data);
      } catch (error) {
        this.warnOnce(format, (error as Error).message);
        continue;
      }
      this.warned.delete(format);
      // A repeated packet refreshes the values' age but is not a new measurement.
      const repeated = decoded.packetId !== undefined && this.lastPacket.get(format) === decoded.packetId;
      if (decoded.packetId !== undefined) this.lastPacket.set(format, decoded.packetId);
      for (const property of properties) {
        const value = measurementOf(decoded, property.visitor.measurement, property.visitor.index);
        if (value === undefined) continue;
        this.advertised.set(property.name, { value, at: now });
        if (!repeated) this.context.push(property.name, value);
      }
    }
  }

  private pushDecoded(name: string, decode: () => PropertyValue): void {
    try {
      this.context.push(name, decode());
      this.warned.delete(name);
    } catch (error) {
      this.warnOnce(name, (error as Error).message);
    }
  }

  /** Once per property until it decodes again: a device stuck on a bad value must not flood the log. */
  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.context.log.warn({ property: key, err: message }, 'bluetooth value not decoded');
  }

  async read(property: BoundProperty): Promise<PropertyValue> {
    const advert = this.adverts.find((p) => p.name === property.name);
    if (advert) {
      const last = this.advertised.get(property.name);
      if (!last) throw new DeviceUnreachableError(`no ${advert.visitor.advertisement} advertisement with ${advert.visitor.measurement} from ${describeMatch(this.match)} yet`);
      const age = performance.now() - last.at;
      if (age > this.advertisementTimeoutMs) throw new DeviceUnreachableError(`no advertisement from ${describeMatch(this.match)} for ${Math.round(age / 1000)} s`);
      return last.value;
    }
    const bound = this.gattProperty(property.name);
    const uuid = bound.visitor.characteristicUUID;
    let data = this.latest.get(uuid);
    if (!data) {
      data = await this.readCharacteristic(uuid);
      if (this.subscribed.has(uuid) && !this.latest.has(uuid)) this.latest.set(uuid, data);
    }
    return decodeValue(data, bound.visitor, property.model.type);
  }

  private async readCharacteristic(uuid: string): Promise<Buffer> {
    const characteristic = this.characteristic(uuid);
    if (!characteristic.properties.includes('read')) throw new Error(`characteristic ${uuid} is not readable (it offers ${characteristic.properties.join(', ')})`);
    return characteristic.readAsync();
  }

  private gattProperty(name: string): Bound<GattVisitor> {
    const bound = this.gatt.find((p) => p.name === name);
    if (!bound) throw new Error(`property ${name} has no bluetooth visitor`);
    return bound;
  }

  async write(property: BoundProperty, value: PropertyValue): Promise<void> {
    if (this.adverts.some((p) => p.name === property.name)) throw new Error(`property ${property.name} comes from advertisements and cannot be written`);
    const bound = this.gattProperty(property.name);
    const uuid = bound.visitor.characteristicUUID;
    const characteristic = this.characteristic(uuid);
    const withResponse = characteristic.properties.includes('write');
    if (!withResponse && !characteristic.properties.includes('writeWithoutResponse')) {
      throw new Error(`characteristic ${uuid} is not writable (it offers ${characteristic.properties.join(', ')})`);
    }
    await withTimeout(
      characteristic.writeAsync(encodeValue(value, bound.visitor, property.model.type), !withResponse),
      GATT_TIMEOUT_MS,
      () => new Error(`writing ${uuid} was not acknowledged within ${GATT_TIMEOUT_MS / 1000} s (the device rejected the value or did not answer)`),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopListening?.();
    try {
      if (!this.session) return;
      this.session.peripheral.removeListener('disconnect', this.onDisconnect);
      for (const characteristic of this.session.characteristics.values()) characteristic.removeAllListeners('data');
      if (this.session.peripheral.state !== 'connected') return;
      await withTimeout(this.session.peripheral.disconnectAsync(), GATT_TIMEOUT_MS, () => new Error(`disconnecting ${describeMatch(this.match)} timed out`));
    } finally {
      await this.controller.release();
    }
  }
}
