/**
 * Runs inside the VM: three emulated Bluetooth LE controllers on one shared radio (btvirt from
 * bluez-test-tools over hci_vhci). hci0 is the agent's (noble), hci1 a GATT peripheral
 * (ble-peripheral.ts, a CC2650 SensorTag that also broadcasts BTHome), hci2 an advertisement-only
 * sensor (a LYWSD03MMC thermometer with the ATC1441/pvvx "custom" firmware).
 *
 * hci0 and hci1 are left down: noble and bleno take them whole through the HCI user channel
 * (HCI_CHANNEL_USER=1). In raw mode (controller up) the kernel would make noble's connections
 * itself, which btvirt never completes, while noble's event loop blocks (see ../shared/testbed.md).
 * hci2 is brought up and driven with raw HCI commands (hcitool).
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { PeripheralCommand, PeripheralEvent } from './ble-peripheral.js';

export const AGENT_HCI = 0;
export const PERIPHERAL_HCI = 1;
export const SENSOR_HCI = 2;

export const SENSORTAG_NAME = 'CC2650 SensorTag';
export const TEMPERATURE_SERVICE = 'f000aa0004514000b000000000000000';
export const TEMPERATURE_DATA = 'f000aa0104514000b000000000000000';
export const TEMPERATURE_CONFIG = 'f000aa0204514000b000000000000000';
export const TEMPERATURE_PERIOD = 'f000aa0304514000b000000000000000';
export const IO_SERVICE = 'f000aa6404514000b000000000000000';
export const IO_DATA = 'f000aa6504514000b000000000000000';
export const IO_CONFIG = 'f000aa6604514000b000000000000000';
export const BTHOME_UUID = 0xfcd2;
export const ATC_UUID = 0x181a;

/** TMP007 encoding, as the sample's converter reads it back: (raw >> 2) × 0.03125 °C. */
export function encodeTmp007(celsius: number): number {
  return Math.round(celsius / 0.03125) * 4;
}

/** BTHome v2, unencrypted, objects in id order: packet id, battery %, temperature ×0.01 °C, humidity ×0.01 %. */
export function bthomeServiceData(packetId: number, values: { battery: number; temperature: number; humidity: number }): Buffer {
  const data = Buffer.alloc(11);
  data.writeUInt8(0x40, 0);
  data.writeUInt8(0x00, 1);
  data.writeUInt8(packetId & 0xff, 2);
  data.writeUInt8(0x01, 3);
  data.writeUInt8(values.battery, 4);
  data.writeUInt8(0x02, 5);
  data.writeInt16LE(Math.round(values.temperature * 100), 6);
  data.writeUInt8(0x03, 8);
  data.writeUInt16LE(Math.round(values.humidity * 100), 9);
  return data;
}

export interface AtcReading {
  temperature: number;
  humidity: number;
  batteryMv: number;
  battery: number;
  counter: number;
}

/** pvvx "custom" format: MAC reversed, temperature ×0.01 °C, humidity ×0.01 %, battery mV, battery %, counter, flags. */
export function atcServiceData(address: string, reading: AtcReading): Buffer {
  const data = Buffer.alloc(15);
  Buffer.from(address.split(':').reverse().join(''), 'hex').copy(data, 0);
  data.writeInt16LE(Math.round(reading.temperature * 100), 6);
  data.writeUInt16LE(Math.round(reading.humidity * 100), 8);
  data.writeUInt16LE(reading.batteryMv, 10);
  data.writeUInt8(reading.battery, 12);
  data.writeUInt8(reading.counter & 0xff, 13);
  data.writeUInt8(0, 14);
  return data;
}

/** One AD structure: length, type, payload. */
export function adStructure(type: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([payload.length + 1, type]), payload]);
}

/** Service data AD structure for a 16-bit UUID. */
export function serviceDataAd(uuid16: number, payload: Buffer): Buffer {
  const uuid = Buffer.alloc(2);
  uuid.writeUInt16LE(uuid16);
  return adStructure(0x16, Buffer.concat([uuid, payload]));
}

/** LE General Discoverable, BR/EDR not supported. */
export const FLAGS_AD = adStructure(0x01, Buffer.from([0x06]));

export interface BleController {
  index: number;
  /** Lower case, as noble reports it; btvirt's addresses are public (00:aa:01:0i:00:0i). */
  address: string;
}

/** What noble needs in its environment to use the agent's controller. */
export function agentEnv(): Record<string, string> {
  return { NOBLE_HCI_DEVICE_ID: String(AGENT_HCI), HCI_CHANNEL_USER: '1' };
}

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sh = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Address and state of a controller, or undefined while its setup has not finished. */
function setUpController(index: number): BleController | undefined {
  const info = sh('hciconfig', [`hci${index}`]);
  const address = /BD Address: ([0-9A-F:]{17})/.exec(info)?.[1];
  const flags = /^\s+(UP|DOWN)\b(.*)$/m.exec(info);
  if (!address || address === '00:00:00:00:00:00' || !flags || flags[1] !== 'DOWN' || flags[2]!.includes('INIT')) return undefined;
  return { index, address: address.toLowerCase() };
}

export class BleTestbed {
  controllers: BleController[] = [];
  private btvirt: ChildProcess | undefined;
  private readonly peripherals = new Set<BlePeripheral>();
  private readonly announceMs: number;
  private atcTimer: NodeJS.Timeout | undefined;
  private atcParametersSet = false;
  /** hcitool calls on hci2 one at a time: a periodic re-announcement must not split a data update. */
  private sensorQueue = Promise.resolve();

  /**
   * btvirt's emulated radio delivers an advertisement only when advertising (or scanning) is
   * switched on, never periodically; the advertisers re-switch it every `announceMs` to stand for
   * a real device's repeated advertising events.
   */
  constructor({ announceMs = 1000 }: { announceMs?: number } = {}) {
    this.announceMs = announceMs;
  }

  async start(): Promise<BleController[]> {
    if (spawnSync('pidof', ['bluetoothd']).status === 0) throw new Error('bluetoothd is running: it would manage the controllers too');
    // btvirt loads the kernel crypto API for its emulated controllers while the kernel already sets
    // up the first one; loading these modules from the 9p root takes longer than the kernel's 2 s HCI
    // command timeout under TCG, so hci0's setup failed (Reset timed out) unless they are loaded first.
    sh('modprobe', ['-a', 'hci_vhci', 'af_alg', 'algif_hash', 'algif_skcipher', 'cmac', 'ecb']);
    const existing = readdirSync('/sys/class/bluetooth');
    if (existing.length > 0) throw new Error(`controllers already present: ${existing.join(' ')}`);
    // Under TCG on a busy host a controller's setup can still miss the kernel's HCI command
    // timeout; a fresh btvirt then gets all three.
    for (let attempt = 1; ; attempt++) {
      const controllers = await this.startBtvirt();
      if (controllers) {
        this.controllers = controllers;
        break;
      }
      const state = sh('hciconfig', ['-a']);
      await this.stopBtvirt();
      if (attempt === 3) throw new Error(`controllers not set up after 3 attempts:\n${state}`);
    }
    sh('hciconfig', [`hci${SENSOR_HCI}`, 'up']);
    return this.controllers;
  }

  /** Starts ble-peripheral.js on hci1 and resolves once it advertises. */
  async startPeripheral(): Promise<BlePeripheral> {
    const peripheral = new BlePeripheral({ BLENO_HCI_DEVICE_ID: String(PERIPHERAL_HCI), HCI_CHANNEL_USER: '1', BLE_ANNOUNCE_MS: String(this.announceMs) });
    this.peripherals.add(peripheral);
    await peripheral.waitFor('ready', undefined, 30_000);
    return peripheral;
  }

  /** Advertises `reading` from hci2 (from now on, and re-announced periodically until stopAtc). */
  advertiseAtc(reading: AtcReading): Promise<void> {
    const address = this.controllers[SENSOR_HCI]!.address;
    const data = Buffer.concat([FLAGS_AD, serviceDataAd(ATC_UUID, atcServiceData(address, reading))]);
    const change = this.onSensor(async () => {
      if (!this.atcParametersSet) {
        // 100 ms interval, ADV_NONCONN_IND, public address, all three channels.
        await hciCommand(0x0006, Buffer.from('a000' + 'a000' + '03' + '00' + '00' + '000000000000' + '07' + '00', 'hex'));
        this.atcParametersSet = true;
      }
      const padded = Buffer.alloc(32);
      padded.writeUInt8(data.length, 0);
      data.copy(padded, 1);
      await hciCommand(0x0008, padded);
      await announce();
    });
    this.atcTimer ??= setInterval(() => void this.onSensor(announce), this.announceMs);
    return change;
  }

  stopAtc(): Promise<void> {
    clearInterval(this.atcTimer);
    this.atcTimer = undefined;
    return this.onSensor(() => hciCommand(0x000a, Buffer.from([0x00]), [0x00, 0x0c]).then(() => undefined));
  }

  async stop(): Promise<void> {
    for (const peripheral of this.peripherals) await peripheral.stop();
    this.peripherals.clear();
    if (this.atcTimer) await this.stopAtc();
    await this.stopBtvirt();
  }

  /** Starts btvirt; the three controllers once set up, or undefined if they were not within 20 s. */
  private async startBtvirt(): Promise<BleController[] | undefined> {
    const btvirt = spawn('btvirt', ['-l3'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.btvirt = btvirt;
    let stderr = '';
    btvirt.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (btvirt.exitCode !== null) throw new Error(`btvirt exited with ${btvirt.exitCode}: ${stderr}`);
      const present = readdirSync('/sys/class/bluetooth').length === 3;
      const controllers = present ? [AGENT_HCI, PERIPHERAL_HCI, SENSOR_HCI].map(setUpController) : [];
      if (controllers.length === 3 && controllers.every((c) => c !== undefined)) return controllers as BleController[];
      if (Date.now() > deadline) return undefined;
      await sleep(100);
    }
  }

  /** Stops btvirt and waits until its controllers are gone. */
  private async stopBtvirt(): Promise<void> {
    const btvirt = this.btvirt;
    this.btvirt = undefined;
    if (btvirt && btvirt.exitCode === null) {
      const exited = new Promise((resolve) => btvirt.once('exit', resolve));
      btvirt.kill('SIGTERM');
      await exited;
    }
    const deadline = Date.now() + 10_000;
    while (readdirSync('/sys/class/bluetooth').length > 0 && Date.now() < deadline) await sleep(100);
  }

  private onSensor(change: () => Promise<void>): Promise<void> {
    const next = this.sensorQueue.then(change);
    this.sensorQueue = next.catch(() => undefined);
    return next;
  }
}

/** Sends one LE controller command (OGF 0x08) to hci2; resolves with its status, rejecting unexpected ones. */
async function hciCommand(ocf: number, parameters: Buffer, accepted = [0x00]): Promise<number> {
  const bytes = [...parameters].map((byte) => byte.toString(16).padStart(2, '0'));
  const { stdout } = await run('hcitool', ['-i', `hci${SENSOR_HCI}`, 'cmd', '0x08', `0x${ocf.toString(16).padStart(4, '0')}`, ...bytes]);
  // The Command Complete parameters come last: ncmd, opcode (2 bytes), status.
  const event = stdout.slice(stdout.lastIndexOf('> HCI Event')).split('\n').slice(1).join(' ').trim().split(/\s+/);
  const status = parseInt(event[3] ?? '', 16);
  if (!accepted.includes(status)) throw new Error(`HCI command 0x08|0x${ocf.toString(16)} on hci${SENSOR_HCI} failed with status ${status}: ${stdout}`);
  return status;
}

/** Advertising off (if it was on) and on again: one advertising event on the emulated radio. */
async function announce(): Promise<void> {
  await hciCommand(0x000a, Buffer.from([0x00]), [0x00, 0x0c]);
  await hciCommand(0x000a, Buffer.from([0x01]));
}

type EventName = PeripheralEvent['event'];
type EventOf<E extends EventName> = Extract<PeripheralEvent, { event: E }>;

interface Waiter {
  test: (event: PeripheralEvent) => boolean;
  resolve: (event: PeripheralEvent) => void;
  reject: (error: Error) => void;
}

/** The peripheral process: commands in, events out. */
export class BlePeripheral {
  /** Every event so far, in order. */
  readonly events: PeripheralEvent[] = [];
  private readonly process: ChildProcess;
  private cursor = 0;
  private waiters: Waiter[] = [];

  constructor(env: Record<string, string>) {
    const script = fileURLToPath(new URL('./ble-peripheral.js', import.meta.url));
    this.process = spawn(process.execPath, [script], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.process.stdout! }).on('line', (line) => {
      let event: PeripheralEvent;
      try {
        event = JSON.parse(line) as PeripheralEvent;
      } catch {
        console.error(`ble-peripheral: ${line}`);
        return;
      }
      this.events.push(event);
      this.wake();
    });
    this.process.once('exit', (code, signal) => {
      const error = new Error(`ble-peripheral exited with ${code ?? signal}`);
      for (const waiter of this.waiters) waiter.reject(error);
      this.waiters = [];
    });
  }

  get address(): string {
    const ready = this.events.find((event): event is EventOf<'ready'> => event.event === 'ready');
    if (!ready) throw new Error('ble-peripheral is not ready');
    return ready.address;
  }

  send(command: PeripheralCommand): void {
    this.process.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /**
   * The next `name` event (passing `test`) after the last one a waitFor returned: events that
   * arrived before the call count, so a command's effects can be awaited after it completed.
   */
  waitFor<E extends EventName>(name: E, test: (event: EventOf<E>) => boolean = () => true, timeoutMs = 30_000): Promise<EventOf<E>> {
    const matches = (event: PeripheralEvent): event is EventOf<E> => event.event === name && test(event as EventOf<E>);
    return new Promise<EventOf<E>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`ble-peripheral: no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        test: matches,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event as EventOf<E>);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
      this.wake();
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.stdin!.end();
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) {
      const index = this.events.findIndex((event, i) => i >= this.cursor && waiter.test(event));
      if (index < 0) continue;
      this.cursor = index + 1;
      this.waiters = this.waiters.filter((w) => w !== waiter);
      waiter.resolve(this.events[index]!);
    }
  }
}
