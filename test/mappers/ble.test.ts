/**
 * BLE against real Bluetooth LE controllers: the scenario boots the VM testbed (btvirt's emulated
 * controllers, a bleno GATT peripheral emulating the CC2650 SensorTag with BTHome advertisements,
 * an ATC-format sensor driven by raw HCI commands) and runs the whole agent inside with the
 * profiles of device-profiles/ble; these tests check what the scenario observed.
 */
import type { DeviceDetail } from '../../src/twin/routes.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { runScenario, VM_TIMEOUT_MS } from '../support/scenario.js';


const reported = (device: unknown, property: string) => (device as DeviceDetail).twin[property]?.actual?.value;

describe('BLE devices on the whole agent', () => {
  let result: Record<string, unknown>;
  beforeAll(async () => {
    result = await runScenario('ble-agent');
  }, VM_TIMEOUT_MS);

  it('decodes BTHome v2 advertisements into the twin, following new measurements', () => {
    expect(reported(result.bthomeFirst, 'humidity')).toBe('45');
    expect(reported(result.bthomeFirst, 'battery')).toBe('90');
    expect(reported(result.bthomeUpdate, 'temperature')).toBe('24.5');
    expect(reported(result.bthomeUpdate, 'humidity')).toBe('50.25');
  });

  it('decodes the ATC/pvvx format, and marks the sensor offline with a reason once it falls silent', () => {
    expect(reported(result.atcFirst, 'humidity')).toBe('45.5');
    expect(reported(result.atcFirst, 'battery')).toBe('87');
    expect(reported(result.atcFirst, 'battery-voltage')).toBe('2.95');
    expect(reported(result.atcUpdate, 'temperature')).toBe('-3.5');
    const gone = result.atcGone as DeviceDetail;
    expect(gone.reason).toMatch(/no advertisement from .* for \d+ s/);
    expect(reported(gone, 'temperature')).toBe('-3.5');
  });

  it('connects to the SensorTag, writes the seeded desired values and follows its notifications', () => {
    expect(result.enableWritten).toMatchObject({ hex: '01', accepted: true });
    expect(result.ioConfigWritten).toMatchObject({ hex: '01', accepted: true });
    expect(reported(result.tagFirst, 'temperature-enable')).toBe('ON');
    expect(reported(result.tagNotified, 'temperature')).toBe('30.25');
    expect(reported(result.tagNotified, 'ambient-temperature')).toBe('23.5');
    // One read for the value at connect time, shared by both properties; the rest are notifications.
    expect(result.temperatureReads).toBe(1);
  });

  it('writes a desired value set by the operator through the dataWrite table and reports it back', () => {
    expect(result.twinSet).toMatch(/io-data/);
    expect(result.ioDataWritten).toMatchObject({ hex: '02', accepted: true });
    expect((result.ioDataReported as DeviceDetail).twin['io-data']?.expected?.value).toBe('Green');
  });

  it('reports a vanished peripheral offline with the reason, and keeps trying without a tight loop', () => {
    expect((result.tagGone as DeviceDetail).reason).toMatch(/disconnected/);
    const stillGone = result.tagStillGone as DeviceDetail;
    expect(stillGone.state).toBe('offline');
    expect(stillGone.reason).toMatch(/not seen on hci0 within 30 s/);
    expect(reported(stillGone, 'temperature')).toBe('30.25');
  });

  it('reconnects when the peripheral comes back and values flow again', () => {
    expect(reported(result.tagBack, 'temperature')).toBe('18.75');
    expect(result.connections).toBe(2);
    expect(result.devices).toMatch(/default\/sensortag-01 +online/);
  });

  it('stops cleanly on SIGTERM', () => {
    expect(result.agentExit).toBe(0);
  });
});
