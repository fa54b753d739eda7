/**
 * A DMI answer follows the commit it answers: on a full disk (the data dir a small tmpfs, mounted
 * here as root), a ReportDeviceStatus whose commit fails is answered with the storage error, not
 * OK, so the mapper knows it was not kept; once there is room, the same report is stored and
 * answered OK. Real peers: the agent as a child process, a gRPC client built from the upstream proto.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail } from '../../src/twin/routes.js';
import { ROOT, spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from '../support/agent.js';

const root = process.getuid?.() === 0;
const dmi = grpc.loadPackageDefinition(protoLoader.loadSync(join(ROOT, 'src/dmi/api.proto'), { keepCase: true })).v1beta1 as grpc.GrpcObject;

function report(socket: string, value: string): Promise<grpc.ServiceError | null> {
  const Service = dmi.DeviceManagerService as grpc.ServiceClientConstructor;
  const client = new Service(`unix:${socket}`, grpc.credentials.createInsecure());
  const request = { deviceName: 'sensor-01', deviceNamespace: 'default', reportedDevice: { twins: [{ propertyName: 'switch', observedDesired: { value: '' }, reported: { value } }] } };
  return new Promise((resolve) => {
    (client.ReportDeviceStatus as (r: object, o: object, cb: (e: grpc.ServiceError | null) => void) => void)(request, { deadline: Date.now() + 5000 }, (error) => {
      client.close();
      resolve(error);
    });
  });
}

describe.skipIf(!root)('DMI on a full disk', () => {
  const dir = tempDir('dmi-faults-');
  const data = join(dir, 'data');
  const socket = join(dir, 'dmi.sock');
  const filler = join(data, 'filler');
  let agent: AgentProcess;

  beforeAll(async () => {
    execFileSync('mkdir', ['-p', data]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', data]);
    agent = await spawnAgent(['--data', data, '--profiles', TEST_PROFILES], { EDGE_AGENT_DMI__SOCKET: socket });
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    execFileSync('umount', ['-l', data]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a report that cannot be committed is answered with the storage error; once there is room it is stored and answered OK', async () => {
    expect(await report(socket, 'before')).toBeNull();
    try {
      writeFileSync(filler, Buffer.alloc(16 << 20));
    } catch {
      // ENOSPC: the filler took all there was.
    }
    const refused = await report(socket, 'on-a-full-disk');
    expect(refused?.code).toBe(grpc.status.INTERNAL);
    expect(refused?.details).toMatch(/storage: .*(full|SQLITE_FULL)/i);

    rmSync(filler);
    expect(await report(socket, 'after-room')).toBeNull();
    const device = (await (await agent.api('/api/v1/devices/default/sensor-01')).json()) as DeviceDetail;
    expect(device.twin.switch?.actual?.value).toBe('after-room');
  });
});
