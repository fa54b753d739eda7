/**
 * The mapper host with the built-in virtual mapper on the demo profiles, observed through the
 * HTTP API: values are read and reported on their own, desired values are written to the
 * "device" and come back as reported values. Waits poll with a deadline. Also the host's pool of
 * shared transports on its own, with transports that record their opening and closing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransportPool } from '../../src/mapperhost/transports.js';
import type { DeviceDetail } from '../../src/twin/routes.js';
import type { MsgTwin } from '../../src/twin/types.js';
import { DEMO_PROFILES, startTestAgent, TEST_PROFILES, type TestAgent } from '../support/agent.js';
import { sleep, waitFor } from '../support/wait.js';

describe('mapper host with the virtual mapper (demo profiles)', () => {
  let agent: TestAgent;

  beforeAll(async () => {
    agent = await startTestAgent({ profiles: [DEMO_PROFILES, TEST_PROFILES] });
  });

  afterAll(async () => {
    await agent?.stop();
  });

  async function device(id: string): Promise<DeviceDetail> {
    const response = await agent.api(`/api/v1/devices/${id}`);
    expect(response.status).toBe(200);
    return (await response.json()) as DeviceDetail;
  }

  async function reported(id: string, property: string): Promise<string | undefined> {
    return (await device(id)).twin[property]?.actual?.value;
  }

  async function setDesired(id: string, values: Record<string, string>): Promise<Response> {
    return agent.api(`/api/v1/devices/${id}/twin/desired`, {
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
    const body = (await response.json()) as { twin: Record<string, MsgTwin> };
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

describe('the pool of shared transports', () => {
  /** A pool whose transports are numbered as they are opened, and a log of what happened to them. */
  function recorded() {
    const pool = new TransportPool();
    const events: string[] = [];
    let opened = 0;
    const acquire = (key: string) =>
      pool.acquire(
        key,
        () => {
          events.push(`open ${key}`);
          return `${key}#${++opened}`;
        },
        async (transport) => void events.push(`close ${transport}`),
      );
    return { pool, events, acquire };
  }

  it('shares one transport among its users and closes it after the last one lets go', async () => {
    const { events, acquire } = recorded();
    const [first, second] = await Promise.all([acquire('modbus:tcp://a'), acquire('modbus:tcp://a')]);
    const other = await acquire('modbus:tcp://b');
    expect([first.transport, second.transport, other.transport]).toEqual(['modbus:tcp://a#1', 'modbus:tcp://a#1', 'modbus:tcp://b#2']);
    await first.release();
    // Twice from the same user counts once: the other user still has it.
    await first.release();
    expect(events).toEqual(['open modbus:tcp://a', 'open modbus:tcp://b']);
    await second.release();
    expect(events).toEqual(['open modbus:tcp://a', 'open modbus:tcp://b', 'close modbus:tcp://a#1']);
    // The next user opens it again.
    expect((await acquire('modbus:tcp://a')).transport).toBe('modbus:tcp://a#3');
  });

  it('does not keep a transport that failed to open: every waiting user gets the error, the next one tries again', async () => {
    const pool = new TransportPool();
    let attempts = 0;
    const open = async () => {
      attempts++;
      if (attempts === 1) throw new Error('no such port');
      return 'line';
    };
    const close = async () => undefined;
    const failed = await Promise.allSettled([pool.acquire('modbus:rtu:///dev/x', open, close), pool.acquire('modbus:rtu:///dev/x', open, close)]);
    expect(failed.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(['no such port', 'no such port']);
    expect((await pool.acquire('modbus:rtu:///dev/x', open, close)).transport).toBe('line');
    expect(attempts).toBe(2);
  });

  it('closes every transport on closeAll, in use or not, and a later release closes nothing twice', async () => {
    const { pool, events, acquire } = recorded();
    const a = await acquire('mqtt:broker');
    await acquire('bluetooth:hci0');
    await pool.closeAll();
    expect(events.filter((e) => e.startsWith('close')).sort()).toEqual(['close bluetooth:hci0#2', 'close mqtt:broker#1']);
    await a.release();
    expect(events.filter((e) => e.startsWith('close'))).toHaveLength(2);
    // The pool serves again after closeAll (a host stopped and started again).
    expect((await acquire('mqtt:broker')).transport).toBe('mqtt:broker#3');
  });

  it('opens a key again only once its old transport is closed (a serial port opens once)', async () => {
    const pool = new TransportPool();
    const events: string[] = [];
    let finishClose!: () => void;
    const first = await pool.acquire('modbus:rtu:///dev/ttyUSB0', () => 'old', () => new Promise<void>((resolve) => (finishClose = resolve)));
    const releasing = first.release();
    const reopening = pool.acquire('modbus:rtu:///dev/ttyUSB0', () => void events.push('opened new'), async () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events).toEqual([]);
    events.push('old closed');
    finishClose();
    await Promise.all([releasing, reopening]);
    expect(events).toEqual(['old closed', 'opened new']);
  });
});
