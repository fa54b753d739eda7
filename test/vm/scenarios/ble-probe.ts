/**
 * In the VM: what plain noble on the agent's controller can do against the testbed's peers. Scan
 * (the SensorTag with BTHome service data, the ATC sensor), connect, GATT as KubeEdge's CC2650
 * sample uses it, notifications (rate and latency in bursts), the peripheral disappearing and
 * coming back. Records timings; the host reads the result file.
 */
import { readFileSync } from 'node:fs';
import type { Characteristic, Peripheral } from '@abandonware/noble';
import { askForAclBuffers } from '../../../mappers/ble/controller.js';
import {
  agentEnv,
  ATC_UUID,
  BleTestbed,
  BTHOME_UUID,
  IO_CONFIG,
  IO_DATA,
  SENSORTAG_NAME,
  TEMPERATURE_CONFIG,
  TEMPERATURE_DATA,
  TEMPERATURE_PERIOD,
  type AtcReading,
} from '../ble-testbed.js';
import { startScenario, writeResult } from '../scenario.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const elapsed = (since: number) => Math.round(performance.now() - since);
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

interface Sighting {
  at: number;
  address: string;
  addressType: string;
  rssi: number;
  connectable: boolean;
  localName: string | undefined;
  serviceData: Record<string, string>;
}

/** BTHome v2 objects 0x00..0x03 (the ones the peripheral sends). */
function decodeBthome(hex: string) {
  const data = Buffer.from(hex, 'hex');
  if (data[0] !== 0x40 || data[1] !== 0x00 || data[3] !== 0x01 || data[5] !== 0x02 || data[8] !== 0x03) throw new Error(`unexpected BTHome data ${hex}`);
  return { packetId: data.readUInt8(2), battery: data.readUInt8(4), temperature: data.readInt16LE(6) / 100, humidity: data.readUInt16LE(9) / 100 };
}

function decodeAtc(hex: string): AtcReading & { mac: string } {
  const data = Buffer.from(hex, 'hex');
  return {
    mac: [...data.subarray(0, 6)].reverse().map((byte) => byte.toString(16).padStart(2, '0')).join(':'),
    temperature: data.readInt16LE(6) / 100,
    humidity: data.readUInt16LE(8) / 100,
    batteryMv: data.readUInt16LE(10),
    battery: data.readUInt8(12),
    counter: data.readUInt8(13),
  };
}

/** The KubeEdge sample's converter for the temperature property: bytes [1,0], >> 2, × 0.03125. */
const sampleTemperature = (data: Buffer) => (((data.readUInt8(1) << 8) | data.readUInt8(0)) >> 2) * 0.03125;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

const { result, step } = startScenario('ble-probe', 280_000);

const testbed = new BleTestbed({ announceMs: 1000 });
try {
  step('testbed');
  result.uptimeAtStartS = uptime();
  let since = performance.now();
  result.controllers = await testbed.start();
  result.controllersMs = elapsed(since);
  since = performance.now();
  const tag = await testbed.startPeripheral();
  result.peripheralReadyMs = elapsed(since);
  const atcFirst: AtcReading = { temperature: 21.37, humidity: 45.5, batteryMv: 2950, battery: 87, counter: 1 };
  await testbed.advertiseAtc(atcFirst);
  const atcAddress = testbed.controllers[2]!.address;
  result.uptimeAtPeersReadyS = uptime();

  step('noble');
  Object.assign(process.env, agentEnv());
  since = performance.now();
  const { default: noble } = await import('@abandonware/noble');
  await new Promise<void>((resolve) => {
    if (noble._state === 'poweredOn') return resolve();
    noble.on('stateChange', (state) => state === 'poweredOn' && resolve());
  });
  askForAclBuffers(noble);
  result.noblePoweredOnMs = elapsed(since);

  const sightings: Sighting[] = [];
  const peripherals = new Map<string, Peripheral>();
  noble.on('discover', (p: Peripheral) => {
    peripherals.set(p.address, p);
    sightings.push({
      at: performance.now(),
      address: p.address,
      addressType: p.addressType,
      rssi: p.rssi,
      connectable: p.connectable,
      localName: p.advertisement.localName,
      serviceData: Object.fromEntries(p.advertisement.serviceData.map(({ uuid, data }) => [uuid, data.toString('hex')])),
    });
  });
  const waitSighting = async (what: string, test: (s: Sighting) => boolean, after: number, timeoutMs = 20_000) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = sightings.find((s) => s.at >= after && test(s));
      if (found) return found;
      if (performance.now() > deadline) throw new Error(`not seen within ${timeoutMs} ms: ${what}`);
      await sleep(20);
    }
  };
  const isTag = (s: Sighting) => s.address === tag.address;
  const isAtc = (s: Sighting) => s.address === atcAddress;
  const bthomeKey = BTHOME_UUID.toString(16);
  const atcKey = ATC_UUID.toString(16);
  const bthome = (s: Sighting) => decodeBthome(s.serviceData[bthomeKey]!);
  const atc = (s: Sighting) => decodeAtc(s.serviceData[atcKey]!);

  step('scan');
  let scanStart = performance.now();
  await noble.startScanningAsync([], true);
  const tagSeen = await waitSighting('the SensorTag with name and BTHome data', (s) => isTag(s) && s.localName === SENSORTAG_NAME && bthomeKey in s.serviceData, scanStart);
  const atcSeen = await waitSighting('the ATC sensor', (s) => isAtc(s) && atcKey in s.serviceData, scanStart);
  result.scan = {
    tagDiscoverMs: Math.round(tagSeen.at - scanStart),
    atcDiscoverMs: Math.round(atcSeen.at - scanStart),
    tag: { ...tagSeen, at: undefined, bthome: bthome(tagSeen) },
    atc: { ...atcSeen, at: undefined, decoded: atc(atcSeen) },
  };
  await sleep(5000);
  const windowStart = scanStart + 5000;
  result.sightingsPerSecond = {
    tag: sightings.filter((s) => isTag(s) && s.at >= scanStart && s.at < windowStart).length / 5,
    atc: sightings.filter((s) => isAtc(s) && s.at >= scanStart && s.at < windowStart).length / 5,
  };

  step('advertised updates');
  since = performance.now();
  tag.send({ cmd: 'set', temperature: 24.5, humidity: 50.25, battery: 80 });
  const tagUpdate = await waitSighting('the BTHome update', (s) => isTag(s) && bthomeKey in s.serviceData && bthome(s).temperature === 24.5, since);
  const atcSecond: AtcReading = { ...atcFirst, temperature: -3.5, counter: 2 };
  const atcSince = performance.now();
  await testbed.advertiseAtc(atcSecond);
  const atcUpdate = await waitSighting('the ATC update', (s) => isAtc(s) && atc(s).counter === 2, atcSince);
  result.updates = {
    bthomeMs: Math.round(tagUpdate.at - since),
    bthome: bthome(tagUpdate),
    atcMs: Math.round(atcUpdate.at - atcSince),
    atc: atc(atcUpdate),
  };
  await noble.stopScanningAsync();

  step('connect');
  const peripheral = peripherals.get(tag.address)!;
  since = performance.now();
  await peripheral.connectAsync();
  const connectMs = elapsed(since);
  await tag.waitFor('accept');
  since = performance.now();
  const { services, characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
  const discoverMs = elapsed(since);
  result.connection = {
    connectMs,
    discoverMs,
    nobleMtu: peripheral.mtu,
    peripheralMtu: tag.events.find((e) => e.event === 'mtu'),
    services: services.map((s) => s.uuid),
    characteristics: characteristics.map((c) => `${c.uuid} ${c.properties.join('|')}`),
  };
  const characteristic = (uuid: string): Characteristic => {
    const found = characteristics.find((c) => c.uuid === uuid);
    if (!found) throw new Error(`characteristic ${uuid} not found`);
    return found;
  };
  const data = characteristic(TEMPERATURE_DATA);
  const config = characteristic(TEMPERATURE_CONFIG);
  const period = characteristic(TEMPERATURE_PERIOD);

  step('gatt');
  const gatt: Record<string, unknown> = {};
  result.gatt = gatt;
  since = performance.now();
  gatt.dataWhileDisabled = (await data.readAsync()).toString('hex');
  gatt.readMs = elapsed(since);
  gatt.configBefore = (await config.readAsync()).toString('hex');
  since = performance.now();
  await config.writeAsync(Buffer.from([0x01]), false);
  gatt.writeMs = elapsed(since);
  gatt.configWrite = await tag.waitFor('write', (e) => e.uuid === TEMPERATURE_CONFIG);
  const enabled = await data.readAsync();
  gatt.dataEnabled = enabled.toString('hex');
  gatt.sampleTemperature = sampleTemperature(enabled);
  gatt.periodDefault = (await period.readAsync()).toString('hex');
  // The tag answers with an ATT error; noble drops error responses to writes, so its promise never settles.
  gatt.periodTooShortNoble = await Promise.race([
    period.writeAsync(Buffer.from([0x05]), false).then(
      () => 'resolved',
      (error: unknown) => `rejected: ${String(error)}`,
    ),
    sleep(3000).then(() => 'unsettled after 3 s'),
  ]);
  gatt.periodTooShortPeripheral = await tag.waitFor('write', (e) => e.uuid === TEMPERATURE_PERIOD);
  await period.writeAsync(Buffer.from([0x1e]), false);
  gatt.periodSet = (await period.readAsync()).toString('hex');

  step('notifications');
  const received: { seq: number; t: bigint; at: number; temperature: number }[] = [];
  data.on('data', (value: Buffer, isNotification: boolean) => {
    if (isNotification) received.push({ seq: value.readUInt16LE(2), t: process.hrtime.bigint(), at: performance.now(), temperature: sampleTemperature(value) });
  });
  await data.subscribeAsync();
  await tag.waitFor('subscribe');
  const periodicFrom = performance.now();
  await sleep(3000);
  const periodic = received.filter((r) => r.at >= periodicFrom);
  const gaps = periodic.slice(1).map((r, i) => r.at - periodic[i]!.at);
  result.periodic = {
    periodMs: 300,
    count: periodic.length,
    meanIntervalMs: gaps.length ? Math.round(gaps.reduce((a, b) => a + b, 0) / gaps.length) : undefined,
    sampleTemperature: periodic[0]?.temperature,
  };

  step('io');
  const ioData = characteristic(IO_DATA);
  await ioData.writeAsync(Buffer.from([0x01]), false);
  result.io = {
    dataWrite: await tag.waitFor('write', (e) => e.uuid === IO_DATA),
    dataReadBack: (await ioData.readAsync()).toString('hex'),
  };
  await characteristic(IO_CONFIG).writeAsync(Buffer.from([0x01]), false);
  (result.io as Record<string, unknown>).configWrite = await tag.waitFor('write', (e) => e.uuid === IO_CONFIG);

  const burst = async (count: number, intervalMs: number) => {
    const firstEvent = tag.events.length;
    const firstReceived = received.length;
    tag.send({ cmd: 'burst', count, intervalMs });
    await tag.waitFor('burst-done', undefined, 180_000);
    let settled = received.length;
    do {
      settled = received.length;
      await sleep(500);
    } while (received.length !== settled);
    const sent = new Map<number, bigint>();
    for (const event of tag.events.slice(firstEvent)) if (event.event === 'sent') sent.set(event.seq, BigInt(event.t));
    const got = received.slice(firstReceived).filter((r) => sent.has(r.seq));
    const latencies = got.map((r) => Number(r.t - sent.get(r.seq)!) / 1e6).sort((a, b) => a - b);
    const sentTimes = [...sent.values()];
    const seconds = (times: bigint[]) => Number(times.at(-1)! - times[0]!) / 1e9;
    return {
      count,
      intervalMs,
      received: got.length,
      outOfOrder: got.slice(1).filter((r, i) => r.seq <= got[i]!.seq).length,
      sentPerSecond: Math.round((sentTimes.length - 1) / seconds(sentTimes)),
      receivedPerSecond: Math.round((got.length - 1) / seconds(got.map((r) => r.t))),
      latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies.at(-1) },
    };
  };
  step('burst');
  // Measuring off: no periodic notifications, so the link falls quiet once a burst is through.
  await config.writeAsync(Buffer.from([0x00]), false);
  result.burstFast = await burst(300, 0);
  result.burstPaced = await burst(100, 20);

  step('unsubscribe');
  await data.unsubscribeAsync();
  result.unsubscribe = await tag.waitFor('unsubscribe');

  step('disappear');
  const nobleDisconnect = new Promise<{ reason: unknown; ms: number }>((resolve) => {
    const from = performance.now();
    peripheral.once('disconnect', (reason: unknown) => resolve({ reason, ms: elapsed(from) }));
  });
  tag.send({ cmd: 'advertise', on: false });
  const gone = await nobleDisconnect;
  await tag.waitFor('advertising', (e) => !e.on);
  result.disappear = { nobleDisconnect: gone, peripheralDisconnect: await tag.waitFor('disconnect') };
  scanStart = performance.now();
  await noble.startScanningAsync([], true);
  await sleep(4000);
  result.whileGone = {
    tagSightings: sightings.filter((s) => isTag(s) && s.at >= scanStart).length,
    atcSightings: sightings.filter((s) => isAtc(s) && s.at >= scanStart).length,
  };

  step('come back');
  const comeBackAt = performance.now();
  tag.send({ cmd: 'advertise', on: true });
  const back = await waitSighting('the SensorTag coming back', isTag, comeBackAt);
  await noble.stopScanningAsync();
  since = performance.now();
  await peripheral.connectAsync();
  const reconnectMs = elapsed(since);
  await tag.waitFor('accept');
  // noble's handles belong to the connection: after a reconnect, characteristics need discovering again.
  const again = await peripheral.discoverSomeServicesAndCharacteristicsAsync([], [TEMPERATURE_DATA, TEMPERATURE_CONFIG]);
  const againCharacteristic = (uuid: string) => again.characteristics.find((c) => c.uuid === uuid)!;
  const configAfterReconnect = (await againCharacteristic(TEMPERATURE_CONFIG).readAsync()).toString('hex');
  await againCharacteristic(TEMPERATURE_CONFIG).writeAsync(Buffer.from([0x01]), false);
  result.comeBack = {
    seenAgainMs: Math.round(back.at - comeBackAt),
    reconnectMs,
    configAfterReconnect,
    dataAfterReconnect: (await againCharacteristic(TEMPERATURE_DATA).readAsync()).toString('hex'),
  };
  await peripheral.disconnectAsync();
  await tag.waitFor('disconnect');

  step('atc stop');
  await testbed.stopAtc();
  scanStart = performance.now();
  await noble.startScanningAsync([], true);
  await sleep(3000);
  await noble.stopScanningAsync();
  result.afterAtcStop = {
    atcSightings: sightings.filter((s) => isAtc(s) && s.at >= scanStart).length,
    tagSightings: sightings.filter((s) => isTag(s) && s.at >= scanStart).length,
  };
  result.uptimeAtEndS = uptime();
  result.ok = true;
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await testbed.stop();
  writeResult('ble-probe', result);
  // noble keeps its HCI socket open and has no close.
  process.exit();
}
