/**
 * The baseline of bench/ble: plain noble connected to the SensorTag and subscribed to the
 * temperature data, recording every notification's sequence number on arrival.
 */
import type { Peripheral } from '@abandonware/noble';
import { askForAclBuffers } from '../../mappers/ble/controller.js';
import { TEMPERATURE_DATA, TEMPERATURE_SERVICE } from '../../test/vm/ble-testbed.js';
import { serveArrivals, type Arrivals } from './arrivals.js';

const address = process.env.BENCH_PERIPHERAL!;
const { default: noble } = await import('@abandonware/noble');
await new Promise<void>((resolve) => {
  if (noble._state === 'poweredOn') return resolve();
  noble.on('stateChange', (state) => state === 'poweredOn' && resolve());
});
askForAclBuffers(noble);

const found = new Promise<Peripheral>((resolve) => noble.on('discover', (p: Peripheral) => p.address === address && resolve(p)));
await noble.startScanningAsync([], true);
const peripheral = await found;
await noble.stopScanningAsync();
await peripheral.connectAsync();
const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([TEMPERATURE_SERVICE], [TEMPERATURE_DATA]);
const data = characteristics[0]!;

let received: Arrivals = [];
data.on('data', (value: Buffer, isNotification: boolean) => {
  if (isNotification) received.push([value.readUInt16LE(2), process.hrtime.bigint().toString()]);
});
await data.subscribeAsync();
serveArrivals(
  () => received.splice(0),
  () => peripheral.disconnectAsync(),
);
