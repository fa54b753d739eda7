/**
 * The Modbus mapper (TCP, RTU and RTU over TCP, modbus-serial): KubeEdge visitors (register
 * type, offset, limit, scale, isSwap, isRegisterSwap, data type), registers of a slave that lie close
 * together read in one request (around the holes the slave answered exceptions for), desired
 * values written to holding registers and coils, values they cannot take refused before.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, Mapper, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import type { Lease } from '../../src/mapperhost/transports.js';
import { describeIssues, valueOrThrow, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { decode, encode, ModbusValueError } from './codec.js';
import { parseModbus } from './config.js';
import { isException, ModbusError, ModbusLine } from './line.js';
import { GAP_EXCEPTIONS } from './gaps.js';
import { planReads, type ReadBlock } from './plan.js';
import { transportKey, type ModbusDevice, type RegisterType, type Visitor } from './types.js';

/** Why Modbus cannot write the visitor's register at all: input registers and discrete inputs are read-only. */
const readOnly = (visitor: Visitor, property: string): string | undefined =>
  visitor.register === 'InputRegister' || visitor.register === 'DiscreteInputRegister' ? `${property} is a ${visitor.register}, which Modbus cannot write` : undefined;

/** An exception answer that says the slave lacks an address, not that it is busy or gone. */
const isGap = (error: unknown): boolean => isException(error) && GAP_EXCEPTIONS.has(error.exception);

class ModbusDeviceConnection implements DeviceConnection {
  constructor(
    private readonly config: ModbusDevice,
    private readonly visitors: DeviceConfig<ModbusDevice, Visitor>['visitors'],
    private readonly line: Lease<ModbusLine>,
  ) {}

  async read(property: BoundProperty): Promise<PropertyValue> {
    const [value] = await this.readMany([property]);
    if (value instanceof Error) throw value;
    return value!;
  }

  async readMany(properties: BoundProperty[]): Promise<Array<PropertyValue | Error>> {
    const results = new Map<string, PropertyValue | Error>();
    const { gaps } = this.line.transport;
    const { slaveId } = this.config;
    const items = properties.map((p) => ({ item: p.name, visitor: this.visitor(p) }));
    for (const block of planReads(items, (register, start, length) => gaps.spans(slaveId, register, start, length))) {
      try {
        this.decodeInto(results, block.members, block.start, await this.readRange(block.register, block.start, block.length));
      } catch (error) {
        if (isGap(error) && block.members.length > 1) await this.readApart(block, results);
        else {
          if (isGap(error)) gaps.learn(slaveId, block.register, block.start, block.length);
          for (const { item } of block.members) results.set(item, error as Error);
        }
      }
    }
    return properties.map((p) => results.get(p.name)!);
  }

  /**
   * A merged read that got an exception: its members one by one, so the others keep updating,
   * and what raised it learned, so later plans read around it. When every member answers, the
   * exception came from an unused range between them: each is probed once to find which.
   */
  private async readApart(block: ReadBlock<string>, results: Map<string, PropertyValue | Error>): Promise<void> {
    const { gaps } = this.line.transport;
    const { slaveId } = this.config;
    let found = false;
    for (const member of block.members) {
      const { offset, limit } = member.visitor;
      try {
        this.decodeInto(results, [member], offset, await this.readRange(block.register, offset, limit));
      } catch (error) {
        results.set(member.item, error as Error);
        if (isGap(error)) {
          gaps.learn(slaveId, block.register, offset, limit);
          found = true;
        }
      }
    }
    if (found) return;
    let end = block.start;
    for (const { visitor } of block.members) {
      if (visitor.offset > end) {
        const start = end;
        await this.readRange(block.register, start, visitor.offset - start).catch((error: unknown) => {
          if (isGap(error)) gaps.learn(slaveId, block.register, start, visitor.offset - start);
        });
      }
      end = Math.max(end, visitor.offset + visitor.limit);
    }
  }

  private async readRange(register: RegisterType, start: number, length: number): Promise<Array<number | boolean>> {
    const { data } = await this.line.transport.request(this.config.slaveId, this.config.timeoutMs, (client): Promise<{ data: Array<number | boolean> }> => {
      switch (register) {
        case 'HoldingRegister':
          return client.readHoldingRegisters(start, length);
        case 'InputRegister':
          return client.readInputRegisters(start, length);
        case 'CoilRegister':
          return client.readCoils(start, length);
        case 'DiscreteInputRegister':
          return client.readDiscreteInputs(start, length);
      }
    });
    if (data.length < length) throw new ModbusError(`short reply: ${data.length} of ${length} ${register} values`);
    return data;
  }

  private decodeInto(results: Map<string, PropertyValue | Error>, members: ReadBlock<string>['members'], start: number, values: Array<number | boolean>): void {
    for (const { item, visitor } of members) {
      const slice = values.slice(visitor.offset - start, visitor.offset - start + visitor.limit);
      results.set(item, decode(visitor, slice as number[] | boolean[]));
    }
  }

  async write(property: BoundProperty, value: PropertyValue): Promise<void> {
    const visitor = this.visitor(property);
    const refused = readOnly(visitor, property.name);
    if (refused) throw new ModbusError(refused);
    const encoded = encode(visitor, value);
    await this.line.transport.request(this.config.slaveId, this.config.timeoutMs, async (client) => {
      if (typeof encoded === 'boolean') await client.writeCoil(visitor.offset, encoded);
      else if (encoded.length === 1 && !this.config.writeMultiple) await client.writeRegister(visitor.offset, encoded[0]!);
      else await client.writeRegisters(visitor.offset, encoded);
    });
  }

  close(): Promise<void> {
    return this.line.release();
  }

  private visitor(property: BoundProperty): Visitor {
    const visitor = this.visitors.get(property.name)?.visitor;
    if (!visitor) throw new ModbusError(`${property.name} has no Modbus visitor`);
    return visitor;
  }
}

export const modbusMapper: Mapper = {
  protocols: ['modbus'],
  validate: (device, model) => describeIssues(parseModbus(device, model)),
  checkWrite(device, model, property, value) {
    const parsed = parseModbus(device, model);
    const visitor = parsed.ok ? parsed.value.visitors.get(property)?.visitor : undefined;
    if (!visitor) return undefined; // the device is unhealthy or the property unmapped: its state already says so
    const refused = readOnly(visitor, property);
    if (refused) return refused;
    try {
      encode(visitor, value);
      return undefined;
    } catch (error) {
      if (error instanceof ModbusValueError) return error.message;
      throw error;
    }
  },
  async connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection> {
    const { protocol: config, visitors } = valueOrThrow(parseModbus(device, model));
    const { transport } = config;
    // Slaves on one RS-485 bus or behind one TCP gateway share its line.
    const line = await context.transports.acquire(`modbus:${transportKey(transport)}`, () => new ModbusLine(transport, context.requests), async (opened) => opened.close());
    line.transport.slowDown(config.delayMs);
    return new ModbusDeviceConnection(config, visitors, line);
  },
};
