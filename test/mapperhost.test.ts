/**
 * The mapper host with the built-in virtual mapper on the demo profiles, observed through the
 * HTTP API: values are read and reported on their own, desired values are written to the
 * "device" and come back as reported values. Waits poll with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PROFILES, startTestAgent, TEST_PROFILES, type TestAgent } from './helpers/agent.js';
import { sleep, waitFor } from './helpers/wait.js';

interface TwinEntry {
  expected?: { value: string; metadata: { timestamp: number } };
  actual?: { value: string; metadata: { timestamp: number } };
  metadata?: { type?: string };
}

interface DeviceDetail {
  id: string;
  state: string;
  twin: Record<string, TwinEntry>;
  delta: Record<string, string>;
}

describe('mapper host with the virtual mapper (demo profiles)', () => {
  let agent: TestAgent;

  beforeAll(async () => {
    agent = await startTestAgent({ profiles: [DEMO_PROFILES, TEST_PROFILES] });
  });

  afterAll(async () => {
    await agent?.stop();
  });

  async function device(id: string): Promise<DeviceDetail> {
    const response = await fetch(`${agent.apiUrl}/api/v1/devices/${id}`);
    expect(response.status).toBe(200);
    return (await response.json()) as DeviceDetail;
  }

  async function reported(id: string, property: string): Promise<string | undefined> {
    return (await device(id)).twin[property]?.actual?.value;
  }

  async function setDesired(id: string, values: Record<string, string>): Promise<Response> {
    return fetch(`${agent.apiUrl}/api/v1/devices/${id}/twin/desired`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(values),
    });
  }

  it('loads the demo and test manifests without errors', () => {
    expect(agent.agent.catalog.current.errors).toEqual([]);
    expect([...agent.agent.catalog.current.devices.keys()]).toEqual(expect.arrayContaining(['default/thermometer-01', 'default/led-01', 'default/counter-01', 'default/sensor-01']));
  });

  it('the virtual thermometer reports a temperature that changes within 5 s', async () => {
    const first = await waitFor('a first reported temperature', () => reported('default/thermometer-01', 'temperature'), { timeoutMs: 5000 });
    expect(Number.isFinite(Number(first))).toBe(true);
    const next = await waitFor('the temperature to change', async () => {
      const now = await reported('default/thermometer-01', 'temperature');
      return now !== undefined && now !== first ? now : undefined;
    }, { timeoutMs: 5000 });
    // A sine of amplitude 3 around 21.5.
    expect(Number(next)).toBeGreaterThanOrEqual(18.5);
    expect(Number(next)).toBeLessThanOrEqual(24.5);
    expect((await device('default/thermometer-01')).state).toBe('online');
  });

  it('writes a desired value set through the API, which then shows up as the reported value and leaves the delta', async () => {
    // The manifest desires "OFF"; the mapper writes it at start and reports it back.
    await waitFor('the LED to report OFF', async () => (await reported('default/led-01', 'power')) === 'OFF');

    const response = await setDesired('default/led-01', { power: 'ON' });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { twin: Record<string, TwinEntry> };
    expect(body.twin.power?.expected?.value).toBe('ON');

    const led = await waitFor('the LED to report ON with no delta left', async () => {
      const d = await device('default/led-01');
      return d.twin.power?.actual?.value === 'ON' && !('power' in d.delta) ? d : undefined;
    });
    expect(led.twin.power?.expected?.value).toBe('ON');
    expect(led.delta).toEqual({});
  });

  it('writes an int desired value too (brightness)', async () => {
    await waitFor('the LED to report its manifest brightness', async () => (await reported('default/led-01', 'brightness')) === '80');
    expect((await setDesired('default/led-01', { brightness: '35' })).status).toBe(200);
    await waitFor('brightness 35 reported', async () => (await reported('default/led-01', 'brightness')) === '35');
    expect((await device('default/led-01')).delta).toEqual({});
  });

  it('the counter counts, pauses with status "2" and resumes with "0"', async () => {
    const start = Number(await waitFor('a first count', () => reported('default/counter-01', 'count')));
    await waitFor('the count to go up', async () => Number(await reported('default/counter-01', 'count')) > start);

    expect((await setDesired('default/counter-01', { status: '2' })).status).toBe(200);
    await waitFor('status 2 reported', async () => (await reported('default/counter-01', 'status')) === '2');
    const paused = await reported('default/counter-01', 'count');
    // Paused: over three collect cycles (1 s each) the count does not move.
    const samples: Array<string | undefined> = [];
    for (let i = 0; i < 12; i++) {
      await sleep(250);
      samples.push(await reported('default/counter-01', 'count'));
    }
    expect(new Set(samples)).toEqual(new Set([paused]));

    expect((await setDesired('default/counter-01', { status: '0' })).status).toBe(200);
    await waitFor('the count to go up again', async () => Number(await reported('default/counter-01', 'count')) > Number(paused));
  });

  it('marks a device whose protocol has no mapper as unhealthy', async () => {
    const sensor = await device('default/sensor-01');
    expect(sensor.state).toBe('unhealthy');
    expect(sensor.twin.temperature?.actual).toBeUndefined();
    expect((await device('plant-a/sensor-02')).state).toBe('unhealthy');
  });

  it('does not serve a device bound to another node', async () => {
    const remote = await device('default/remote-01');
    expect(remote).toMatchObject({ managed: false, state: 'unknown' });
    expect(remote.twin.temperature?.actual).toBeUndefined();
  });
});
