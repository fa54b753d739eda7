/**
 * In the VM: the whole agent (`edge-agent start`) with the BLE profiles from device-profiles/ble,
 * their addresses replaced by the testbed's. First the advertisement-only sensors (BTHome from the
 * SensorTag, ATC from hci2), then, after a profile reload, the SensorTag over GATT: notifications,
 * seeded and operator-set desired values written to the peripheral, the peripheral vanishing and
 * coming back. Records what the agent's API and CLI and the peripheral saw; the host checks it.
 */
import type { DeviceDetail } from '../../../src/twin/routes.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnAgent, type AgentProcess } from '../../support/agent-process.js';
import { agentEnv, BleTestbed, IO_DATA, SENSOR_HCI, TEMPERATURE_CONFIG, TEMPERATURE_DATA, IO_CONFIG, type AtcReading } from '../ble-testbed.js';
import { startScenario, writeResult } from '../scenario.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
const PROFILES = '/tmp/ble-profiles';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


const { result, step } = startScenario('ble-agent', 400_000);

/** A profile from device-profiles/ble with the testbed's values in place of the real device's. */
function profile(file: string, replacements: Array<[string | RegExp, string]>): string {
  let text = readFileSync(join(ROOT, 'device-profiles/ble', file), 'utf8');
  for (const [from, to] of replacements) {
    const before = text;
    text = text.replaceAll(from, to);
    if (text === before) throw new Error(`${file}: nothing to replace for ${String(from)}`);
  }
  return text;
}

const testbed = new BleTestbed({ announceMs: 1000 });
let agent: AgentProcess | undefined;
try {
  step('testbed');
  await testbed.start();
  const tag = await testbed.startPeripheral();
  const atcFirst: AtcReading = { temperature: 21.37, humidity: 45.5, batteryMv: 2950, battery: 87, counter: 1 };
  await testbed.advertiseAtc(atcFirst);
  const tagAddress = tag.address.toUpperCase();
  const atcAddress = testbed.controllers[SENSOR_HCI]!.address.toUpperCase();

  step('agent with the advertisement-only sensors');
  mkdirSync(PROFILES, { recursive: true });
  const fastAdverts: Array<[string | RegExp, string]> = [[/collectCycle: \d+/g, 'collectCycle: 1000']];
  writeFileSync(join(PROFILES, 'bthome.yaml'), profile('bthome-thermometer.yaml', [['A4:C1:38:00:00:01', tagAddress], ['advertisementTimeout: 180000', 'advertisementTimeout: 4000'], ...fastAdverts]));
  writeFileSync(join(PROFILES, 'atc.yaml'), profile('lywsd03mmc-atc.yaml', [['A4:C1:38:00:00:02', atcAddress], ...fastAdverts, [/(macAddress: .*)/g, '$1\n      advertisementTimeout: 4000']]));
  const started = performance.now();
  agent = await spawnAgent(['--profiles', PROFILES, '--data', '/tmp/ble-data', '--node', 'edge-vm'], { env: agentEnv() });
  const { apiUrl, api } = agent;
  const device = async (id: string) => (await (await api(`/api/v1/devices/${id}`)).json()) as DeviceDetail;
  const until = async (what: string, id: string, test: (d: DeviceDetail) => boolean, timeoutMs = 90_000) => {
    const deadline = performance.now() + timeoutMs;
    result.waitingFor = what;
    for (;;) {
      const seen = await device(id);
      if (test(seen)) return seen;
      result.lastSeen = seen;
      if (performance.now() > deadline) throw new Error(`not within ${timeoutMs / 1000} s: ${what}; last seen ${JSON.stringify(seen)}`);
      await sleep(100);
    }
  };
  const reported = (d: DeviceDetail, property: string) => d.twin[property]?.actual?.value;
  const cli = (...args: string[]) => execFileSync(process.execPath, [join(ROOT, 'dist/src/cli.js'), ...args, '--api', apiUrl, '--data', '/tmp/ble-data'], { encoding: 'utf8' });

  step('BTHome');
  const bthome = 'default/bthome-thermometer-01';
  result.bthomeFirst = await until('BTHome values from the SensorTag', bthome, (d) => d.state === 'online' && reported(d, 'temperature') === '22.5');
  result.bthomeFirstMs = Math.round(performance.now() - started);
  tag.send({ cmd: 'set', temperature: 24.5, humidity: 50.25, battery: 80 });
  result.bthomeUpdate = await until('the BTHome update', bthome, (d) => reported(d, 'temperature') === '24.5' && reported(d, 'battery') === '80');

  step('ATC');
  const atc = 'default/lywsd03mmc-01';
  result.atcFirst = await until('ATC values', atc, (d) => d.state === 'online' && reported(d, 'temperature') === '21.37');
  await testbed.advertiseAtc({ ...atcFirst, temperature: -3.5, counter: 2 });
  result.atcUpdate = await until('the ATC update', atc, (d) => reported(d, 'temperature') === '-3.5');
  await testbed.stopAtc();
  const atcStopped = performance.now();
  result.atcGone = await until('the silent ATC sensor offline', atc, (d) => d.state === 'offline');
  result.atcOfflineAfterMs = Math.round(performance.now() - atcStopped);

  step('SensorTag over GATT');
  writeFileSync(join(PROFILES, 'sensortag.yaml'), profile('cc2650-sensortag.yaml', [['BC:6A:29:AE:CC:96', tagAddress]]));
  agent.child.kill('SIGHUP');
  const sensortag = 'default/sensortag-01';
  await tag.waitFor('accept', undefined, 60_000);
  result.subscribed = await tag.waitFor('subscribe', (e) => e.uuid === TEMPERATURE_DATA);
  result.enableWritten = await tag.waitFor('write', (e) => e.uuid === TEMPERATURE_CONFIG);
  result.ioConfigWritten = await tag.waitFor('write', (e) => e.uuid === IO_CONFIG);
  result.tagFirst = await until('the tag measuring and notifying', sensortag, (d) => d.state === 'online' && reported(d, 'temperature') === '24.5' && reported(d, 'ambient-temperature') === '21');
  tag.send({ cmd: 'set', temperature: 30.25, ambient: 23.5 });
  result.tagNotified = await until('the new temperature', sensortag, (d) => reported(d, 'temperature') === '30.25' && reported(d, 'ambient-temperature') === '23.5');

  step('desired value from the operator');
  result.twinSet = cli('twin', 'set', sensortag, 'io-data', 'Green');
  result.ioDataWritten = await tag.waitFor('write', (e) => e.uuid === IO_DATA);
  result.ioDataReported = await until('io-data reported back', sensortag, (d) => reported(d, 'io-data') === 'Green');
  // After the value at connect time, notifications alone carry the temperature.
  result.temperatureReads = tag.events.filter((e) => e.event === 'read' && e.uuid === TEMPERATURE_DATA).length;

  step('the peripheral disappears');
  tag.send({ cmd: 'advertise', on: false });
  const gone = performance.now();
  result.tagGone = await until('the tag offline', sensortag, (d) => d.state === 'offline');
  result.tagOfflineAfterMs = Math.round(performance.now() - gone);
  // Away for longer than a connect attempt waits for the device, so one attempt fails on its own.
  await sleep(35_000);
  result.tagStillGone = await device(sensortag);

  step('the peripheral comes back');
  tag.send({ cmd: 'advertise', on: true });
  const back = performance.now();
  await tag.waitFor('accept', undefined, 120_000);
  tag.send({ cmd: 'set', temperature: 18.75 });
  result.tagBack = await until('the tag online with a new value', sensortag, (d) => d.state === 'online' && reported(d, 'temperature') === '18.75', 120_000);
  result.tagBackAfterMs = Math.round(performance.now() - back);
  result.connections = tag.events.filter((e) => e.event === 'accept').length;
  result.devices = cli('devices');
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  if (agent) {
    agent.child.kill('SIGTERM');
    result.agentExit = await agent.exited;
  }
  await testbed.stop();
  writeResult('ble-agent', result);
}
