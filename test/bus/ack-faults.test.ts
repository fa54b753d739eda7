/**
 * No acknowledgement without the data, on a full disk: the agent's data dir is a small tmpfs
 * (mounted here, as root), filled up while the agent runs. A QoS 1 `twin/update` whose commit
 * fails gets no PUBACK — the agent drops the connection, so an MQTT 3.1.1 client sends it again —
 * and the result topic says 500 with the storage error. Once there is room again, the client's
 * resend is committed and acknowledged. Real peers: the agent as a child process, the mqtt client.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail } from '../../src/twin/routes.js';
import { spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from '../support/agent.js';
import { collect, connectClient } from '../support/mqtt.js';
import { waitFor } from '../support/wait.js';

const DEVICE = 'default/sensor-01';
const root = process.getuid?.() === 0;

describe.skipIf(!root)('a full disk', () => {
  const data = tempDir('ack-faults-');
  const filler = join(data, 'filler');
  let agent: AgentProcess;
  let client: MqttClient;
  /** Another client watches the result topic: the publisher's own connection is dropped. */
  let observer: MqttClient;

  beforeAll(async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', data]);
    agent = await spawnAgent(['--data', data, '--profiles', TEST_PROFILES]);
    client = await mqtt.connectAsync(agent.mqttUrl, { clientId: 'ack-faults', reconnectPeriod: 200, clean: false });
    observer = await connectClient(agent.mqttUrl);
  });

  afterAll(async () => {
    await client?.endAsync(true);
    await observer?.endAsync(true);
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    execFileSync('umount', ['-l', data]);
    rmSync(data, { recursive: true, force: true });
  });

  it('gets no PUBACK and a 500 storage result while nothing can be committed, and its resend is committed once there is room', async () => {
    const results = await collect(observer, `$hw/events/device/${DEVICE}/twin/update/result`);
    const disconnects: number[] = [];
    client.on('close', () => disconnects.push(performance.now()));
    // The disk fills up: whatever the agent writes next cannot reach the file.
    try {
      writeFileSync(filler, Buffer.alloc(16 << 20));
    } catch {
      // ENOSPC: the filler took all there was.
    }
    let acknowledged = false;
    const payload = JSON.stringify({ event_id: 'full-1', timestamp: Date.now(), twin: { switch: { actual: { value: 'stored-after-room' } } } });
    const published = client.publishAsync(`$hw/events/device/${DEVICE}/twin/update`, payload, { qos: 1 }).then(() => (acknowledged = true));

    await waitFor('the connection dropped instead of a PUBACK', () => disconnects.length > 0, { timeoutMs: 10_000 });
    expect(acknowledged).toBe(false);
    await waitFor('a 500 result naming the storage error', () => results.messages.some((m) => m.body.code === 500), { timeoutMs: 10_000 });
    const failure = results.messages.find((m) => m.body.code === 500)!.body;
    expect(String(failure.reason)).toMatch(/storage: .*(full|SQLITE_FULL)/i);
    // Still full: every resend is refused the same way, and none is acknowledged.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(acknowledged).toBe(false);

    rmSync(filler);
    await published;
    expect(acknowledged).toBe(true);
    const device = (await (await agent.api(`/api/v1/devices/${DEVICE}`)).json()) as DeviceDetail;
    expect(device.twin.switch?.actual?.value).toBe('stored-after-room');
    await results.stop();
  });
});
