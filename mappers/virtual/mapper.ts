/**
 * The virtual mapper: devices that need no hardware, so the agent shows live data anywhere.
 * It serves KubeEdge's `virtualProtocol` samples (random-int/random-float, the counter demo,
 * the virtual LED) and the demo profiles. The visitor's `function` picks the behaviour:
 *   counter  +`step` per read; a sibling `status` property set to "1" (OFF) resets it, "2" pauses it
 *   random   uniform in [min, max] (visitor, else the model's minimum/maximum, else 0..100)
 *   sine     offset + amplitude·sin(2πt/periodS)
 *   value    holds what was last written (switches, LEDs), starting at the model's default
 * Without `function`: `count` counts, numeric dataTypes are random, the rest hold a value.
 */
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { BoundProperty, DeviceConnection, Mapper, PropertyValue } from '../../src/mapperhost/contract.js';

type VirtualFunction = 'counter' | 'random' | 'sine' | 'value';

function numberOr(value: unknown, fallback: number): number {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) ? n : fallback;
}

function functionOf(property: BoundProperty): VirtualFunction {
  const explicit = property.visitor.function;
  if (explicit === 'counter' || explicit === 'random' || explicit === 'sine' || explicit === 'value') return explicit;
  if (property.name === 'count' || property.visitor.name === 'count') return 'counter';
  const dataType = String(property.visitor.dataType ?? '');
  if (['int', 'float', 'double'].includes(dataType)) return 'random';
  return 'value';
}

function initialValue(property: BoundProperty): PropertyValue {
  const fallback = property.model.defaultValue;
  switch (property.model.type) {
    case 'int':
    case 'float':
    case 'double':
      return numberOr(fallback, 0);
    case 'boolean':
      return fallback === 'true';
    default:
      return fallback ?? '';
  }
}

class VirtualDevice implements DeviceConnection {
  private readonly values = new Map<string, PropertyValue>();
  /** Monotonic (performance.now()): a wall-clock step must not jump the sine's phase. */
  private readonly started = performance.now();

  read(property: BoundProperty): Promise<PropertyValue> {
    return Promise.resolve(this.next(property));
  }

  /** The device's values are at hand: a group is read at once, under one deadline instead of one per property. */
  readMany(properties: BoundProperty[]): Promise<PropertyValue[]> {
    return Promise.resolve(properties.map((property) => this.next(property)));
  }

  write(property: BoundProperty, value: PropertyValue): Promise<void> {
    this.values.set(property.name, value);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private next(property: BoundProperty): PropertyValue {
    const v = property.visitor;
    const current = this.values.get(property.name) ?? initialValue(property);
    switch (functionOf(property)) {
      case 'counter': {
        const status = String(this.values.get('status') ?? '0');
        const value = status === '1' ? 0 : status === '2' ? Number(current) : Number(current) + numberOr(v.step, 1);
        this.values.set(property.name, value);
        return property.model.type === 'string' ? String(value) : value;
      }
      case 'random': {
        const min = numberOr(v.min, property.model.minimum ?? 0);
        const max = numberOr(v.max, property.model.maximum ?? 100);
        const value = min + Math.random() * (max - min);
        return property.model.type === 'int' ? Math.round(value) : value;
      }
      case 'sine': {
        const seconds = (performance.now() - this.started) / 1000;
        const period = numberOr(v.periodS, 60);
        return numberOr(v.offset, 0) + numberOr(v.amplitude, 1) * Math.sin((2 * Math.PI * seconds) / period);
      }
      case 'value':
        return current;
    }
  }
}

export const virtualMapper: Mapper = {
  protocols: ['virtualProtocol', 'virtual'],
  // Any visitor does: a field it does not know leaves the behaviour to the property's name and type.
  validate: () => [],
  connect(_device: Device, _model: DeviceModel): Promise<DeviceConnection> {
    return Promise.resolve(new VirtualDevice());
  },
};
