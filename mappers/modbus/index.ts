/**
 * The Modbus mapper (TCP and RTU, modbus-serial): KubeEdge visitors (register type, offset,
 * limit, scale, isSwap, isRegisterSwap, data type), registers of a slave that lie close
 * together read in one request, desired values written to holding registers and coils.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, Mapper, MapperContext, PropertyValue } from '../../src/mapperhost/contract.js';
import type { Lease } from '../../src/mapperhost/transports.js';
import { describeIssues, valueOrThrow, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { decode, encode } from './codec.js';
import { parseModbus } from './config.js';
import { ModbusError, ModbusLine } from './line.js';
import { planReads } from './plan.js';
import { transportKey, type ModbusDevice, type Visitor } from './types.js';

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
    const blocks = planReads(properties.map((p) => ({ item: p.name, visitor: this.visitor(p) })));
    for (const block of blocks) {
      try {
        const data = await this.line.transport.request(this.config.slaveId, this.config.timeoutMs, (client): Promise<{ data: Array<number | boolean> }> => {
          switch (block.register) {
            case 'HoldingRegister':
              return client.readHoldingRegisters(block.start, block.length);
            case 'InputRegister':
              return client.readInputRegisters(block.start, block.length);
            case 'CoilRegister':
              return client.readCoils(block.start, block.length);
            case 'DiscreteInputRegister':
              return client.readDiscreteInputs(block.start, block.length);
          }
        });
        const values = data.data;
        if (values.length < block.length) throw new ModbusError(`short reply: ${values.length} of ${block.length} ${block.register} values`);
        for (const { item, visitor } of block.members) {
          const slice = values.slice(visitor.offset - block.start, visitor.offset - block.start + visitor.limit);
          results.set(item, decode(visitor, slice as number[] | boolean[]));
        }
      } catch (error) {
        for (const { item } of block.members) results.set(item, error as Error);
      }
    }
    return properties.map((p) => results.get(p.name)!);
  }

  async write(property: BoundProperty, value: PropertyValue): Promise<void> {
    const visitor = this.visitor(property);
    if (visitor.register === 'InputRegister' || visitor.register === 'DiscreteInputRegister') {
      throw new ModbusError(`${property.name} is a ${visitor.register}, which Modbus cannot write`);
    }
    const encoded = encode(visitor, value);
    await this.line.transport.request(this.config.slaveId, this.config.timeoutMs, async (client) => {
      if (typeof encoded === 'boolean') await client.writeCoil(visitor.offset, encoded);
      else if (encoded.length === 1) await client.writeRegister(visitor.offset, encoded[0]!);
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
  async connect(device: Device, model: DeviceModel, context: MapperContext): Promise<DeviceConnection> {
    const { protocol: config, visitors } = valueOrThrow(parseModbus(device, model));
    const { transport } = config;
    // Slaves on one RS-485 bus or behind one TCP gateway share its line.
    const line = await context.transports.acquire(`modbus:${transportKey(transport)}`, () => new ModbusLine(transport), async (opened) => opened.close());
    return new ModbusDeviceConnection(config, visitors, line);
  },
};
