/**
 * Refused writes made visible (`Mapper.checkWrite`, `Twins.onDesire`, the runner's write error
 * as state reason and twin metadata):
 * the agent in-process with a Modbus device on a pymodbus server (test/fixtures/modbus/server.py)
 * that answers exception 2 to writes on one register; observed through the HTTP API.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { startModbusTcp, type ModbusTcpServer } from '../support/modbus.js';
import { waitFor } from '../support/wait.js';
import type { DeviceDetail } from '../../src/twin/routes.js';

const ID = 'default/refused-01';
const PROPS = [
  { name: 'reading', accessMode: 'ReadWrite', register: 'InputRegister', offset: 10, dataType: 'int16' },
  { name: 'setpoint', accessMode: 'ReadWrite', register: 'HoldingRegister', offset: 30, dataType: 'int16' },
  { name: 'locked', accessMode: 'WriteOnly', register: 'HoldingRegister', offset: 40, dataType: 'int16' },
];

describe('desired values the device cannot take, visible to the caller', () => {
  let server: ModbusTcpServer;
  let agent: TestAgent;
  let dir: string;

  const desire = (values: Record<string, string>) =>
    agent.api(`/api/v1/devices/${ID}/twin/desired`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(values) });
  const detail = async () => (await (await agent.api(`/api/v1/devices/${ID}`)).json()) as DeviceDetail;

  beforeAll(async () => {
    server = await startModbusTcp({ slaves: { 1: { ir: { 10: 12 }, refuse: { hr: [[40, 41, 2]] } } } });
    dir = tempDir('modbus-refused-');
    const docs = [
      {
        apiVersion: 'devices.kubeedge.io/v1beta1',
        kind: 'DeviceModel',
        metadata: { name: 'refused', namespace: 'default' },
        spec: { protocol: 'modbus', properties: PROPS.map((p) => ({ name: p.name, type: 'INT', accessMode: p.accessMode })) },
      },
      {
        apiVersion: 'devices.kubeedge.io/v1beta1',
        kind: 'Device',
        metadata: { name: 'refused-01', namespace: 'default' },
        spec: {
          deviceModelRef: { name: 'refused' },
          protocol: { protocolName: 'modbus', configData: { communicateMode: 'TCP', ip: '127.0.0.1', port: server.port, slaveID: 1 } },
          properties: PROPS.map((p) => ({
            name: p.name,
            collectCycle: 300,
            reportCycle: 300,
            visitors: { protocolName: 'modbus', configData: { register: p.register, offset: p.offset, limit: 1, dataType: p.dataType } },
          })),
        },
      },
    ];
    writeFileSync(join(dir, 'devices.yaml'), docs.map((d) => yaml.dump(d)).join('---\n'));
    agent = await startTestAgent({ profiles: [dir] });
    await waitFor('the device online', async () => ((await detail()).state === 'online' ? true : undefined), { timeoutMs: 10_000, intervalMs: 100 });
  });

  afterAll(async () => {
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a desired value for an input register is refused with 422 and the reason, and not set', async () => {
    const response = await desire({ reading: '5' });
    expect(response.status).toBe(422);
    expect(((await response.json()) as { reason: string }).reason).toMatch(/reading: .*InputRegister.*cannot write/);
    expect((await detail()).twin.reading?.expected).toBeUndefined();
  });

  it('a value out of range for the register type is refused with 422; a whole request is refused when one value is', async () => {
    const response = await desire({ setpoint: '40000' });
    expect(response.status).toBe(422);
    expect(((await response.json()) as { reason: string }).reason).toMatch(/setpoint: 40000 does not fit int16/);
    expect((await desire({ setpoint: '7', reading: '1' })).status).toBe(422);
    expect((await detail()).twin.setpoint?.expected).toBeUndefined();
  });

  it('a value the device can take is written', async () => {
    expect((await desire({ setpoint: '7' })).status).toBe(200);
    await waitFor('setpoint written', async () => ((await server.get(1, 'hr', 30))[0] === 7 ? true : undefined), { timeoutMs: 5000, intervalMs: 100 });
  });

  it("a write the device answers with an exception shows as the device's state reason and in its twin's metadata, the device staying online", async () => {
    expect((await desire({ locked: '1' })).status).toBe(200);
    const d = await waitFor('the write error as reason', async () => {
      const current = await detail();
      return current.reason?.includes('locked') ? current : undefined;
    }, { timeoutMs: 5000, intervalMs: 100 });
    expect(d.reason).toMatch(/write of locked failed: slave 1 answered exception 2/);
    expect(d.state).toBe('online');
    expect(d.twin.locked?.metadata).toEqual({ type: 'int', writeError: 'slave 1 answered exception 2 (illegal data address)' });
    // It stays the reason across later good reads.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect((await detail()).reason).toBe(d.reason);
  });
});
