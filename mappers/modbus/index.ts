/**
 * The Modbus mapper (TCP and RTU, modbus-serial): KubeEdge visitors (register type, offset,
 * limit, scale, isSwap, isRegisterSwap, data type), registers of a slave that lie close
 * together read in one request, desired values written to holding registers and coils.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, Mapper, PropertyValue } from '../../src/mapperhost/contract.js';
import { decode, encode } from './codec.js';
import { parseDevice, parseVisitor, transportKey, type ModbusDevice, type Visitor } from './config.js';
import { ModbusError, ModbusLine } from './line.js';
import { planReads } from './plan.js';

/** Lines by endpoint, with how many devices use each: slaves on one RS-485 bus share its port. */
const lines = new Map<string, { line: ModbusLine; users: number }>();

function acquire(config: ModbusDevice): ModbusLine {
  const key = transportKey(config.transport);
  const entry = lines.get(key) ?? { line: new ModbusLine(config.transport), users: 0 };
  entry.users++;
  lines.set(key, entry);
  return entry.line;
}

function release(line: ModbusLine): void {
  const entry = lines.get(line.key);
  if (!entry || --entry.users > 0) return;
  lines.delete(line.key);
  line.close();
}

class ModbusDeviceConnection implements DeviceConnection {
  private closed = false;

  constructor(
    private readonly config: ModbusDevice,
    private readonly visitors: Map<string, Visitor>,
    private readonly line: ModbusLine,
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
        const data = await this.line.request(this.config.slaveId, this.config.timeoutMs, (client): Promise<{ data: Array<number | boolean> }> => {
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
    await this.line.request(this.config.slaveId, this.config.timeoutMs, async (client) => {
      if (typeof encoded === 'boolean') await client.writeCoil(visitor.offset, encoded);
      else if (encoded.length === 1) await client.writeRegister(visitor.offset, encoded[0]!);
      else await client.writeRegisters(visitor.offset, encoded);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    release(this.line);
  }

  private visitor(property: BoundProperty): Visitor {
    const visitor = this.visitors.get(property.name);
    if (!visitor) throw new ModbusError(`${property.name} has no Modbus visitor`);
    return visitor;
  }
}

export const modbusMapper: Mapper = {
  protocols: ['modbus'],
  async connect(device: Device, model: DeviceModel): Promise<DeviceConnection> {
    const config = parseDevice(device);
    const modelProperties = new Map(model.properties.map((p) => [p.name, p]));
    const visitors = new Map<string, Visitor>();
    for (const property of device.properties) {
      const modelProperty = modelProperties.get(property.name);
      if (modelProperty) visitors.set(property.name, parseVisitor(device.id, { name: property.name, visitor: property.visitor, model: modelProperty }));
    }
    return new ModbusDeviceConnection(config, visitors, acquire(config));
  },
};
