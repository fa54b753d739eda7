/**
 * A Modbus TCP device that answers with a reply of the wrong length (one register where two were
 * asked for): the read fails with a clear error, the device goes offline, the agent keeps
 * serving its other devices. The peer is a raw TCP server speaking Modbus TCP framing, as
 * pymodbus cannot be made to send a malformed reply.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { waitFor } from '../support/wait.js';

/** Answers every read with one register, whatever the request's quantity. */
function shortReplyServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('data', (request) => {
      // MBAP header: transaction id (2), protocol id (2), length (2), unit id (1); then the PDU.
      const reply = Buffer.from([request[0]!, request[1]!, 0, 0, 0, 5, request[6]!, request[7]!, 2, 0x12, 0x34]);
      socket.write(reply);
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

const manifests = (port: number) => `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: meter, namespace: default}
spec:
  properties:
    - {name: power, type: FLOAT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: broken-meter, namespace: default}
spec:
  deviceModelRef: {name: meter}
  protocol: {protocolName: modbus, configData: {communicateMode: TCP, ip: 127.0.0.1, port: ${port}, slaveID: 1, timeout: 300}}
  properties:
    - {name: power, collectCycle: 200, visitors: {configData: {register: HoldingRegister, offset: 0, limit: 2, dataType: float32}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: virtual-meter, namespace: default}
spec:
  deviceModelRef: {name: meter}
  protocol: {protocolName: virtualProtocol}
  properties:
    - {name: power, collectCycle: 200, visitors: {configData: {function: random}}}
`;

describe('modbus reply of the wrong length', () => {
  const profiles = tempDir('modbus-short-');
  let peer: { server: Server; port: number };
  let agent: TestAgent;

  beforeAll(async () => {
    peer = await shortReplyServer();
    writeFileSync(join(profiles, 'devices.yaml'), manifests(peer.port));
    agent = await startTestAgent({ profiles: [profiles] });
  });

  afterAll(async () => {
    await agent?.stop();
    peer?.server.close();
    rmSync(profiles, { recursive: true, force: true });
  });

  it('marks the device offline and keeps the others going', async () => {
    const state = (name: string) => agent.agent.twins.get(`default/${name}`)?.state;
    await waitFor('broken-meter offline', () => state('broken-meter') === 'offline', { timeoutMs: 10_000 });
    expect(agent.agent.twins.get('default/broken-meter')!.twin.get('power')!.actual).toBeUndefined();
    const before = agent.agent.twins.get('default/virtual-meter')!.twin.get('power')!.actual?.timestamp ?? 0;
    await waitFor('virtual-meter still reporting', () => (agent.agent.twins.get('default/virtual-meter')!.twin.get('power')!.actual?.timestamp ?? 0) > before);
    expect(state('virtual-meter')).toBe('online');
  });
});
