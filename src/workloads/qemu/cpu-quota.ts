/**
 * A CPU cap on whole processes through the kernel's cgroup cpu controller: cgroup v2 (`cpu.max`)
 * when the unified hierarchy has it, else v1 (`cpu.cfs_quota_us`). Each process gets its own
 * group under `edge-agent/`, made after the process exists and removed once it has ended.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../log.js';

export class CpuQuota {
  private static readonly PERIOD_US = 100_000;

  private constructor(
    private readonly parent: string,
    private readonly version: 1 | 2,
  ) {}

  static forHost(): CpuQuota {
    const root = '/sys/fs/cgroup';
    const controllers = existsSync(join(root, 'cgroup.controllers')) ? readFileSync(join(root, 'cgroup.controllers'), 'utf8').split(/\s+/) : [];
    const quota = controllers.includes('cpu')
      ? new CpuQuota(join(root, 'edge-agent'), 2)
      : existsSync(join(root, 'cpu', 'cpu.cfs_quota_us'))
        ? new CpuQuota(join(root, 'cpu', 'edge-agent'), 1)
        : undefined;
    if (!quota) throw new Error('cpuQuotaPercent needs the cgroup cpu controller (cgroup v2 at /sys/fs/cgroup, or v1 at /sys/fs/cgroup/cpu), and this host has neither');
    try {
      mkdirSync(quota.parent, { recursive: true });
      // v2 hands a controller down only where every level above enables it for its children.
      if (quota.version === 2) for (const dir of [root, quota.parent]) writeFileSync(join(dir, 'cgroup.subtree_control'), '+cpu');
    } catch (error) {
      throw new Error(`cpuQuotaPercent: cannot set up cgroup ${quota.parent}: ${(error as Error).message}`);
    }
    return quota;
  }

  /** Puts `pid` (all its threads) in a new group `name` limited to `percent` of one core; returns the group's path. */
  confine(name: string, pid: number, percent: number): string {
    const dir = join(this.parent, name);
    mkdirSync(dir);
    const quotaUs = Math.round((percent / 100) * CpuQuota.PERIOD_US);
    try {
      if (this.version === 2) {
        writeFileSync(join(dir, 'cpu.max'), `${quotaUs} ${CpuQuota.PERIOD_US}`);
      } else {
        writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CpuQuota.PERIOD_US));
        writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
      }
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch (error) {
      rmdirSync(dir);
      throw new Error(`cpuQuotaPercent: cannot confine QEMU in cgroup ${dir}: ${(error as Error).message}`);
    }
    return dir;
  }

  release(dir: string, log: Logger): void {
    try {
      rmdirSync(dir);
    } catch (error) {
      log.warn({ cgroup: dir, err: (error as Error).message }, 'cannot remove the cgroup of an ended QEMU');
    }
  }
}

