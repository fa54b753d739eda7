/**
 * Sensor values carried in advertisements, read without connecting: BTHome v2 (service data
 * 0xFCD2) and the ATC1441 / pvvx formats of the Xiaomi LYWSD03MMC firmware (service data 0x181A).
 */
export const BTHOME_UUID = 'fcd2';
export const ATC_UUID = '181a';

export interface Measurement {
  name: string;
  value: number | string;
}

export interface DecodedAdvertisement {
  measurements: Measurement[];
  /** The sender's counter: the same packet repeated carries the same id. */
  packetId?: number;
}

export class AdvertisementError extends Error {}

/** [object id, name, bytes, signed, factor]; from the BTHome v2 format table (bthome.io/format). */
type ObjectSpec = readonly [number, string, number, boolean, number];
const BTHOME_OBJECTS: readonly ObjectSpec[] = [
  [0x00, 'packet_id', 1, false, 1],
  [0x01, 'battery', 1, false, 1],
  [0x02, 'temperature', 2, true, 0.01],
  [0x03, 'humidity', 2, false, 0.01],
  [0x04, 'pressure', 3, false, 0.01],
  [0x05, 'illuminance', 3, false, 0.01],
  [0x06, 'mass_kg', 2, false, 0.01],
  [0x07, 'mass_lb', 2, false, 0.01],
  [0x08, 'dewpoint', 2, true, 0.01],
  [0x09, 'count', 1, false, 1],
  [0x0a, 'energy', 3, false, 0.001],
  [0x0b, 'power', 3, false, 0.01],
  [0x0c, 'voltage', 2, false, 0.001],
  [0x0d, 'pm2_5', 2, false, 1],
  [0x0e, 'pm10', 2, false, 1],
  [0x0f, 'generic_boolean', 1, false, 1],
  [0x10, 'power_on', 1, false, 1],
  [0x11, 'opening', 1, false, 1],
  [0x12, 'co2', 2, false, 1],
  [0x13, 'tvoc', 2, false, 1],
  [0x14, 'moisture', 2, false, 0.01],
  [0x15, 'battery_low', 1, false, 1],
  [0x16, 'battery_charging', 1, false, 1],
  [0x17, 'carbon_monoxide', 1, false, 1],
  [0x18, 'cold', 1, false, 1],
  [0x19, 'connectivity', 1, false, 1],
  [0x1a, 'door', 1, false, 1],
  [0x1b, 'garage_door', 1, false, 1],
  [0x1c, 'gas_detected', 1, false, 1],
  [0x1d, 'heat', 1, false, 1],
  [0x1e, 'light', 1, false, 1],
  [0x1f, 'lock', 1, false, 1],
  [0x20, 'moisture_detected', 1, false, 1],
  [0x21, 'motion', 1, false, 1],
  [0x22, 'moving', 1, false, 1],
  [0x23, 'occupancy', 1, false, 1],
  [0x24, 'plug', 1, false, 1],
  [0x25, 'presence', 1, false, 1],
  [0x26, 'problem', 1, false, 1],
  [0x27, 'running', 1, false, 1],
  [0x28, 'safety', 1, false, 1],
  [0x29, 'smoke', 1, false, 1],
  [0x2a, 'sound', 1, false, 1],
  [0x2b, 'tamper', 1, false, 1],
  [0x2c, 'vibration', 1, false, 1],
  [0x2d, 'window', 1, false, 1],
  [0x2e, 'humidity', 1, false, 1],
  [0x2f, 'moisture', 1, false, 1],
  [0x3a, 'button', 1, false, 1],
  [0x3c, 'dimmer', 2, false, 1],
  [0x3d, 'count', 2, false, 1],
  [0x3e, 'count', 4, false, 1],
  [0x3f, 'rotation', 2, true, 0.1],
  [0x40, 'distance_mm', 2, false, 1],
  [0x41, 'distance_m', 2, false, 0.1],
  [0x42, 'duration', 3, false, 0.001],
  [0x43, 'current', 2, false, 0.001],
  [0x44, 'speed', 2, false, 0.01],
  [0x45, 'temperature', 2, true, 0.1],
  [0x46, 'uv_index', 1, false, 0.1],
  [0x47, 'volume', 2, false, 0.1],
  [0x48, 'volume_ml', 2, false, 1],
  [0x49, 'volume_flow_rate', 2, false, 0.001],
  [0x4a, 'voltage', 2, false, 0.1],
  [0x4b, 'gas', 3, false, 0.001],
  [0x4c, 'gas', 4, false, 0.001],
  [0x4d, 'energy', 4, false, 0.001],
  [0x4e, 'volume', 4, false, 0.001],
  [0x4f, 'water', 4, false, 0.001],
  [0x50, 'timestamp', 4, false, 1],
  [0x51, 'acceleration', 2, false, 0.001],
  [0x52, 'gyroscope', 2, false, 0.001],
  [0x55, 'volume_storage', 4, false, 0.001],
  [0x56, 'conductivity', 2, false, 1],
  [0x57, 'temperature', 1, true, 1],
  [0x58, 'temperature', 1, true, 0.35],
  [0x59, 'count', 1, true, 1],
  [0x5a, 'count', 2, true, 1],
  [0x5b, 'count', 4, true, 1],
  [0x5c, 'power', 4, true, 0.01],
  [0x5d, 'current', 2, true, 0.001],
  [0x5e, 'direction', 2, false, 0.01],
  [0x5f, 'precipitation', 2, false, 0.1],
  [0x60, 'channel', 1, false, 1],
  [0x61, 'rotational_speed', 2, false, 1],
  [0xf0, 'device_type', 2, false, 1],
  [0xf1, 'firmware', 4, false, 1],
  [0xf2, 'firmware', 3, false, 1],
];
const BY_ID = new Map(BTHOME_OBJECTS.map((spec) => [spec[0], spec]));
const VARIABLE_LENGTH = new Map([
  [0x53, 'text'],
  [0x54, 'raw'],
]);

export const BTHOME_MEASUREMENTS = new Set([...BTHOME_OBJECTS.map((spec) => spec[1]), ...VARIABLE_LENGTH.values()]);
export const ATC_MEASUREMENTS = new Set(['temperature', 'humidity', 'battery', 'battery_voltage', 'packet_id']);

/** Rounds away binary noise (0.1 × 2512 is 251.20000000000002) without losing the factor's digits. */
function scale(raw: number, factor: number): number {
  return factor === 1 ? raw : Number((raw * factor).toFixed(6));
}

function readInteger(data: Buffer, offset: number, bytes: number, signed: boolean): number {
  return signed ? data.readIntLE(offset, bytes) : data.readUIntLE(offset, bytes);
}

const BTHOME_VERSION = 2;

export function decodeBthome(data: Buffer): DecodedAdvertisement {
  if (data.length < 1) throw new AdvertisementError('BTHome service data is empty');
  const info = data[0]!;
  const version = info >> 5;
  if (version !== BTHOME_VERSION) throw new AdvertisementError(`BTHome version ${version} is not supported (only v2)`);
  if (info & 0x01) throw new AdvertisementError('encrypted BTHome advertisements are not supported');
  const measurements: Measurement[] = [];
  let packetId: number | undefined;
  let offset = 1;
  while (offset < data.length) {
    const id = data[offset++]!;
    const variable = VARIABLE_LENGTH.get(id);
    if (variable) {
      const length = data[offset++];
      if (length === undefined || offset + length > data.length) throw new AdvertisementError(`BTHome object 0x${id.toString(16)} runs past the end`);
      const bytes = data.subarray(offset, offset + length);
      measurements.push({ name: variable, value: id === 0x53 ? bytes.toString('utf8') : bytes.toString('hex') });
      offset += length;
      continue;
    }
    const spec = BY_ID.get(id);
    // Without its length an unknown object hides everything after it; what came before stands.
    if (!spec) break;
    const [, name, bytes, signed, factor] = spec;
    if (offset + bytes > data.length) throw new AdvertisementError(`BTHome object ${name} runs past the end`);
    const value = scale(readInteger(data, offset, bytes, signed), factor);
    offset += bytes;
    if (id === 0x00) packetId = value;
    measurements.push({ name, value });
  }
  return { measurements, packetId };
}

/** ATC1441: 13 bytes, big-endian. pvvx custom: 15 bytes, little-endian. */
export function decodeAtc(data: Buffer): DecodedAdvertisement {
  if (data.length === 13) {
    const packetId = data.readUInt8(12);
    return {
      packetId,
      measurements: [
        { name: 'temperature', value: scale(data.readInt16BE(6), 0.1) },
        { name: 'humidity', value: data.readUInt8(8) },
        { name: 'battery', value: data.readUInt8(9) },
        { name: 'battery_voltage', value: scale(data.readUInt16BE(10), 0.001) },
        { name: 'packet_id', value: packetId },
      ],
    };
  }
  if (data.length === 15) {
    const packetId = data.readUInt8(13);
    return {
      packetId,
      measurements: [
        { name: 'temperature', value: scale(data.readInt16LE(6), 0.01) },
        { name: 'humidity', value: scale(data.readUInt16LE(8), 0.01) },
        { name: 'battery_voltage', value: scale(data.readUInt16LE(10), 0.001) },
        { name: 'battery', value: data.readUInt8(12) },
        { name: 'packet_id', value: packetId },
      ],
    };
  }
  throw new AdvertisementError(`ATC service data has ${data.length} bytes; expected 13 (ATC1441) or 15 (pvvx)`);
}

/** The advertisement formats a visitor may name, by the name it uses. */
export const FORMATS = {
  bthome: { uuid: BTHOME_UUID, decode: decodeBthome, measurements: BTHOME_MEASUREMENTS },
  atc: { uuid: ATC_UUID, decode: decodeAtc, measurements: ATC_MEASUREMENTS },
} satisfies Record<string, { uuid: string; decode: (data: Buffer) => DecodedAdvertisement; measurements: Set<string> }>;

export type AdvertisementFormat = keyof typeof FORMATS;

/** The index-th measurement of that name, or undefined when this packet does not carry it. */
export function measurementOf(decoded: DecodedAdvertisement, name: string, index: number): number | string | undefined {
  return decoded.measurements.filter((m) => m.name === name)[index]?.value;
}
