/**
 * Power cuts: what the agent acknowledged is on the disk when the power goes. The VM testbed
 * (Debian's kernel under QEMU) runs an agent per `twin.synchronous` mode, each with its data dir
 * on an ext4 disk image of its own, under a burst of MQTT QoS 1 twin updates; QEMU is killed
 * mid-burst, so the guest's page cache is lost and nothing is shut down. The VM boots again and
 * mounts the disks (its kernel replays the journals, as a gateway's does), then the real agent
 * reads each data dir: with `full` every acknowledged update is there, with `normal` some are not.
 * Peers: QEMU, the guest's ext4, mkfs.ext4 and debugfs (e2fsprogs), the agent, the mqtt client.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Synchronous } from '../../src/db/synchronous.js';
import type { TwinView } from '../../src/twin/routes.js';
import { ROOT, spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from '../support/agent.js';
import { runInVm } from '../vm/vm.js';
import { ackFile, CUT_POWER_LINE, DATA_ON_DISK, DEVICE, disk, MODES } from '../vm/power-cut.js';

const DISK_MB = 64;
const VM_TIMEOUT_MS = 150_000;

/** The last acknowledged value of each key, from the scenario's record. */
function lastAcknowledged(record: string | undefined): Map<string, number> {
  const last = new Map<string, number>();
  for (const line of (record ?? '').split('\n')) {
    const [key, value] = line.split(' ');
    if (key && value) last.set(key, Math.max(last.get(key) ?? 0, Number(value)));
  }
  return last;
}

describe('a power cut mid-burst', () => {
  const dir = tempDir('edge-agent-power-cut-');
  const images = MODES.map((mode) => join(dir, `${mode}.img`));
  const agents: AgentProcess[] = [];
  afterAll(() => {
    for (const agent of agents) agent.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'keeps every acknowledged update with synchronous=full, and loses some with normal',
    async () => {
      for (const image of images) {
        execFileSync('truncate', ['-s', `${DISK_MB}M`, image]);
        execFileSync('mkfs.ext4', ['-q', '-F', image]);
      }
      const burst = await runInVm(`cd ${ROOT} && node dist/test/vm/scenarios/power-cut.js`, {
        disks: images,
        shares: [ROOT],
        timeoutMs: VM_TIMEOUT_MS,
        cutPowerAt: (line) => line.includes(CUT_POWER_LINE),
      });
      expect(burst.exitCode, `the scenario ended before the power cut:\n${burst.output.slice(-3000)}`).toBeUndefined();

      // Booted again: mounting replays each disk's ext4 journal; unmounting leaves it clean for debugfs.
      const mounts = MODES.map((mode) => `mount ${disk(mode)} /tmp/disk && umount /tmp/disk || exit 1`).join('\n');
      const reboot = await runInVm(`modprobe -a virtio_blk ext4 && mkdir -p /tmp/disk || exit 1\n${mounts}`, { disks: images, timeoutMs: VM_TIMEOUT_MS });
      expect(reboot.exitCode, reboot.output.slice(-3000)).toBe(0);

      const lost: Partial<Record<Synchronous, number>> = {};
      for (const [i, mode] of MODES.entries()) {
        const data = join(dir, mode);
        execFileSync('debugfs', ['-R', `rdump ${DATA_ON_DISK} ${dir}`, images[i]!], { stdio: 'ignore' });
        execFileSync('mv', [join(dir, DATA_ON_DISK.slice(1)), data]);
        const agent = await spawnAgent(['--data', data, '--profiles', TEST_PROFILES]);
        agents.push(agent);
        // A power cut leaves a sound database: the start check must not take it for a damaged one.
        expect(await (await fetch(`${agent.apiUrl}/healthz`)).json()).toMatchObject({ status: 'ok' });
        const twin = (await (await agent.api(`/api/v1/devices/${DEVICE}/twin`)).json()) as TwinView;
        const acknowledged = lastAcknowledged(burst.file(ackFile(mode)));
        expect(acknowledged.size, `no acknowledged updates recorded for ${mode}`).toBeGreaterThan(0);
        lost[mode] = 0;
        for (const [key, value] of acknowledged) lost[mode] += Math.max(0, value - Number(twin[key]?.actual?.value ?? 0));
        const total = [...acknowledged.values()].reduce((sum, value) => sum + value, 0);
        console.log(`power cut, synchronous=${mode}: ${total} updates acknowledged, ${lost[mode]} of them lost`);
      }
      expect(lost.full).toBe(0);
      expect(lost.normal).toBeGreaterThan(0);
    },
    2 * VM_TIMEOUT_MS + 30_000,
  );
});
