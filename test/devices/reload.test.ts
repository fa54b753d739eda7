/**
 * SIGHUP reloads the device profiles: devices added or removed on disk join or leave the
 * twin, and `membership/updated` announces each, as EdgeCore does when the cloud changes them.
 */
import { rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_NAME, spawnAgent, tempDir, type AgentProcess } from '../support/agent.js';
import { collect, connectClient } from '../support/mqtt.js';
import { waitFor } from '../support/wait.js';

const MODEL = `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: plug, namespace: default}
spec:
  properties:
    - {name: power, type: FLOAT, accessMode: ReadOnly}
`;

function device(name: string): string {
  return `apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: ${name}, namespace: default}
spec:
  deviceModelRef: {name: plug}
  protocol: {protocolName: virtualProtocol}
  properties:
    - {name: power, collectCycle: 1000, visitors: {configData: {function: random}}}
`;
}

describe('profile reload', () => {
  const profiles = tempDir('edge-agent-profiles-');
  const data = tempDir();
  let agent: AgentProcess;
  let client: MqttClient;

  beforeAll(async () => {
    writeFileSync(join(profiles, 'model.yaml'), MODEL);
    writeFileSync(join(profiles, 'plug-a.yaml'), device('plug-a'));
    agent = await spawnAgent(['--profiles', profiles, '--data', data]);
    client = await connectClient(agent.mqttUrl);
  });

  afterAll(async () => {
    await client?.endAsync();
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    rmSync(profiles, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  });

  it('announces added and removed devices on SIGHUP and serves the new set', async () => {
    const updates = await collect(client, `$hw/events/node/${NODE_NAME}/membership/updated`);
    writeFileSync(join(profiles, 'plug-b.yaml'), device('plug-b'));
    unlinkSync(join(profiles, 'plug-a.yaml'));
    agent.child.kill('SIGHUP');

    await waitFor('two membership updates', () => updates.messages.length >= 2);
    const bodies = updates.messages.map((m) => m.body);
    expect(bodies).toContainEqual(expect.objectContaining({ added_devices: [expect.objectContaining({ id: 'default/plug-b', name: 'plug-b' })], removed_devices: null }));
    expect(bodies).toContainEqual(expect.objectContaining({ added_devices: null, removed_devices: [expect.objectContaining({ id: 'default/plug-a', name: 'plug-a' })] }));
    await updates.stop();

    expect((await agent.api('/api/v1/devices/default/plug-a')).status).toBe(404);
    await waitFor('plug-b reporting', async () => {
      const twin = (await (await agent.api('/api/v1/devices/default/plug-b/twin')).json()) as { power?: { actual?: { value: string } } };
      return twin.power?.actual?.value !== undefined;
    });
  });
});
