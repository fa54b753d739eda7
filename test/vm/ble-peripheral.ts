/**
 * A TI CC2650 SensorTag as KubeEdge's CC2650 samples see it (IR temperature and IO services), which
 * also broadcasts BTHome v2 service data: one device that is both a GATT thermometer and a BTHome
 * sensor. Runs as its own process on a controller of its own, controlled by JSON lines on stdin,
 * reporting JSON lines on stdout (see the types below); it exits when stdin closes.
 *
 * Environment: BLENO_HCI_DEVICE_ID (the controller, taken through the HCI user channel, so it must
 * be down), BLE_ANNOUNCE_MS (how often advertising is re-switched, default 1000).
 * Starts like the real tag: measuring off (data reads zeros), period 0x64 (1 s).
 */
import { createInterface } from 'node:readline';
import { adStructure, bthomeServiceData, encodeTmp007, FLAGS_AD, IO_CONFIG, IO_DATA, IO_SERVICE, SENSORTAG_NAME, serviceDataAd, TEMPERATURE_CONFIG, TEMPERATURE_DATA, TEMPERATURE_PERIOD, TEMPERATURE_SERVICE } from './ble-testbed.js';

export type PeripheralCommand =
  /** Values in °C, % and %; the GATT object temperature and the BTHome temperature are both `temperature`. */
  | { cmd: 'set'; temperature?: number; ambient?: number; humidity?: number; battery?: number }
  /** Off stops advertising and drops the connection: the device disappears. */
  | { cmd: 'advertise'; on: boolean }
  /** Drops the connection but keeps advertising. */
  | { cmd: 'disconnect' }
  /** N notifications on the data characteristic with a sequence number in the ambient field; needs a subscriber. */
  | { cmd: 'burst'; count: number; intervalMs: number };

export type PeripheralEvent =
  | { event: 'ready'; address: string }
  | { event: 'advertising'; on: boolean }
  | { event: 'accept'; address: string }
  | { event: 'disconnect'; address: string }
  | { event: 'mtu'; mtu: number }
  | { event: 'read'; uuid: string }
  | { event: 'write'; uuid: string; hex: string; accepted: boolean }
  | { event: 'subscribe'; uuid: string; maxValueSize: number }
  | { event: 'unsubscribe'; uuid: string }
  /** `t` is process.hrtime.bigint() in ns as a string: CLOCK_MONOTONIC, comparable across processes in one machine. */
  | { event: 'sent'; seq: number; t: string }
  | { event: 'burst-done'; count: number }
  | { event: 'error'; message: string };

// The real tag's firmware rejects periods under 300 ms with this ATT application error.
const ATT_ERR_INVALID_VALUE = 0x80;
const MIN_PERIOD = 30;

const emit = (event: PeripheralEvent): void => {
  process.stdout.write(`${JSON.stringify(event)}\n`);
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// bleno reads these when it is loaded: the controller is taken whole (HCI user channel), like a separate device.
process.env.HCI_CHANNEL_USER ??= '1';
process.env.BLENO_DEVICE_NAME ??= SENSORTAG_NAME;
const { default: bleno } = await import('@abandonware/bleno');
const { Characteristic, PrimaryService } = bleno;

/** The emulated radio (btvirt) only reports an advertiser when advertising is switched on: re-switching it is an advertising event. */
const announceMs = Number(process.env.BLE_ANNOUNCE_MS ?? 1000);

const state = {
  temperature: 22.5,
  ambient: 21.0,
  humidity: 45.0,
  battery: 90,
  enabled: false,
  period: 100,
  ioData: 0,
  ioConfig: 0,
  packetId: 0,
  advertising: false,
  client: undefined as string | undefined,
  bursting: false,
};
let notify: ((data: Buffer) => void) | undefined;
let periodTimer: NodeJS.Timeout | undefined;

function measurement(ambientField: number): Buffer {
  const data = Buffer.alloc(4);
  data.writeInt16LE(encodeTmp007(state.temperature), 0);
  data.writeUInt16LE(ambientField & 0xffff, 2);
  return data;
}

/** Like the real tag: zeros until measuring is enabled. */
function temperatureData(): Buffer {
  return state.enabled ? measurement(encodeTmp007(state.ambient)) : Buffer.alloc(4);
}

function restartPeriodicNotifications(): void {
  clearInterval(periodTimer);
  periodTimer = undefined;
  if (!notify || !state.enabled || state.bursting) return;
  periodTimer = setInterval(() => notify?.(temperatureData()), state.period * 10);
}

type ByteRegister = { get: () => number; set: (value: number) => boolean };

function byteCharacteristic(uuid: string, register: ByteRegister): InstanceType<typeof Characteristic> {
  return new Characteristic({
    uuid,
    properties: ['read', 'write'],
    onReadRequest: (offset, callback) => {
      emit({ event: 'read', uuid });
      if (offset > 0) return callback(Characteristic.RESULT_ATTR_NOT_LONG);
      callback(Characteristic.RESULT_SUCCESS, Buffer.from([register.get()]));
    },
    onWriteRequest: (data, offset, _withoutResponse, callback) => {
      const accepted = offset === 0 && data.length === 1 && register.set(data[0]!);
      emit({ event: 'write', uuid, hex: data.toString('hex'), accepted });
      if (offset > 0) return callback(Characteristic.RESULT_ATTR_NOT_LONG);
      if (data.length !== 1) return callback(Characteristic.RESULT_INVALID_ATTRIBUTE_LENGTH);
      callback(accepted ? Characteristic.RESULT_SUCCESS : ATT_ERR_INVALID_VALUE);
    },
  });
}

const services = [
  new PrimaryService({
    uuid: TEMPERATURE_SERVICE,
    characteristics: [
      new Characteristic({
        uuid: TEMPERATURE_DATA,
        properties: ['read', 'notify'],
        onReadRequest: (offset, callback) => {
          emit({ event: 'read', uuid: TEMPERATURE_DATA });
          if (offset > 0) return callback(Characteristic.RESULT_ATTR_NOT_LONG);
          callback(Characteristic.RESULT_SUCCESS, temperatureData());
        },
        onSubscribe: (maxValueSize, updateValueCallback) => {
          emit({ event: 'subscribe', uuid: TEMPERATURE_DATA, maxValueSize });
          notify = updateValueCallback;
          restartPeriodicNotifications();
        },
        onUnsubscribe: () => {
          emit({ event: 'unsubscribe', uuid: TEMPERATURE_DATA });
          notify = undefined;
          restartPeriodicNotifications();
        },
      }),
      byteCharacteristic(TEMPERATURE_CONFIG, {
        get: () => (state.enabled ? 1 : 0),
        set: (value) => {
          state.enabled = value === 1;
          restartPeriodicNotifications();
          return true;
        },
      }),
      byteCharacteristic(TEMPERATURE_PERIOD, {
        get: () => state.period,
        set: (value) => {
          if (value < MIN_PERIOD) return false;
          state.period = value;
          restartPeriodicNotifications();
          return true;
        },
      }),
    ],
  }),
  new PrimaryService({
    uuid: IO_SERVICE,
    characteristics: [
      byteCharacteristic(IO_DATA, { get: () => state.ioData, set: (value) => ((state.ioData = value), true) }),
      byteCharacteristic(IO_CONFIG, { get: () => state.ioConfig, set: (value) => ((state.ioConfig = value), true) }),
    ],
  }),
];

function advertisingData(): Buffer {
  return Buffer.concat([FLAGS_AD, serviceDataAd(0xfcd2, bthomeServiceData(state.packetId, state))]);
}

const scanResponse = adStructure(0x09, Buffer.from(SENSORTAG_NAME));

function startAdvertising(): Promise<void> {
  return new Promise((resolve, reject) =>
    bleno.startAdvertisingWithEIRData(advertisingData(), scanResponse, (error) => (error ? reject(error) : resolve())),
  );
}

function stopAdvertising(): Promise<void> {
  return new Promise((resolve) => bleno.stopAdvertising(() => resolve()));
}

/** Advertising changes one at a time: a toggle must not interleave with an explicit on/off. */
let advertisingQueue = Promise.resolve();
function advertisingChange(change: () => Promise<void>): Promise<void> {
  advertisingQueue = advertisingQueue.then(change).catch((error: Error) => emit({ event: 'error', message: error.message }));
  return advertisingQueue;
}

function reannounce(): Promise<void> {
  return advertisingChange(async () => {
    if (!state.advertising || state.client) return;
    await stopAdvertising();
    await startAdvertising();
  });
}

async function burst(count: number, intervalMs: number): Promise<void> {
  if (!notify) return emit({ event: 'error', message: 'burst needs a subscriber' });
  state.bursting = true;
  restartPeriodicNotifications();
  for (let seq = 0; seq < count && notify; seq++) {
    notify(measurement(seq));
    emit({ event: 'sent', seq, t: process.hrtime.bigint().toString() });
    await (intervalMs > 0 ? sleep(intervalMs) : new Promise((resolve) => setImmediate(resolve)));
  }
  state.bursting = false;
  restartPeriodicNotifications();
  emit({ event: 'burst-done', count });
}

function handle(command: PeripheralCommand): Promise<void> | void {
  switch (command.cmd) {
    case 'set':
      state.temperature = command.temperature ?? state.temperature;
      state.ambient = command.ambient ?? state.ambient;
      state.humidity = command.humidity ?? state.humidity;
      state.battery = command.battery ?? state.battery;
      state.packetId = (state.packetId + 1) & 0xff;
      return reannounce();
    case 'advertise':
      return advertisingChange(async () => {
        state.advertising = command.on;
        if (command.on) {
          await startAdvertising();
        } else {
          await stopAdvertising();
          if (state.client) bleno.disconnect();
        }
        emit({ event: 'advertising', on: command.on });
      });
    case 'disconnect':
      if (state.client) bleno.disconnect();
      return;
    case 'burst':
      return burst(command.count, command.intervalMs);
  }
}

bleno.on('accept', (address) => {
  state.client = address;
  emit({ event: 'accept', address });
});
bleno.on('disconnect', (address) => {
  state.client = undefined;
  notify = undefined;
  restartPeriodicNotifications();
  emit({ event: 'disconnect', address });
});
bleno.on('mtuChange', (mtu) => emit({ event: 'mtu', mtu }));

await new Promise<void>((resolve, reject) => {
  bleno.on('stateChange', (newState) => {
    if (newState === 'poweredOn') resolve();
    else if (newState === 'unsupported' || newState === 'unauthorized') reject(new Error(`bleno: ${newState}`));
  });
});
await new Promise<void>((resolve, reject) => bleno.setServices(services, (error) => (error ? reject(error) : resolve())));
state.advertising = true;
await startAdvertising();
setInterval(() => void reannounce(), announceMs);
emit({ event: 'ready', address: bleno.address });

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (!line.trim()) return;
    try {
      void handle(JSON.parse(line) as PeripheralCommand);
    } catch (error) {
      emit({ event: 'error', message: `${(error as Error).message}: ${line}` });
    }
  })
  .on('close', () => process.exit(0));
