/**
 * The QEMU runtime: each guest is a QEMU process with its sockets and console in the run
 * directory, under KVM where KVM really runs guests, else TCG.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Logger } from '../../log.js';
import type { Guest, GuestSpec, Runtime } from '../runtime.js';
import { detectAccel } from './accel.js';
import type { QemuOptions } from './args.js';
import { consoleTail, QemuProcess } from './process.js';

export class QemuRuntime implements Runtime {
  constructor(
    private readonly runDir: string,
    private readonly log: Logger,
  ) {}

  async start(spec: GuestSpec, snapshot?: string): Promise<Guest> {
    return QemuProcess.start(await this.options(spec, { snapshot }), this.log.child({ workload: spec.name }));
  }

  async incoming(spec: GuestSpec, uri: string): Promise<Guest> {
    const qemu = await QemuProcess.start(await this.options(spec, { incoming: 'defer' }), this.log.child({ workload: spec.name }));
    try {
      await qemu.migrateIncoming(uri);
    } catch (error) {
      await qemu.quit().catch(() => undefined);
      throw error;
    }
    return qemu;
  }

  /** QEMUs are found by their command line, which names files in this runtime's run directory. */
  reclaim(): void {
    for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
      let commandLine: string;
      try {
        commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      const program = commandLine.split('\0')[0]!.split('/').pop()!;
      if (!program.startsWith('qemu-system') || !commandLine.includes(`${this.runDir}/`)) continue;
      this.log.warn({ pid: Number(pid) }, 'QEMU left by a previous run of the agent ended');
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }

  consoleTail(name: string, bytes: number): string {
    return consoleTail(this.runDir, name, bytes);
  }

  private async options(spec: GuestSpec, extra: Pick<QemuOptions, 'snapshot' | 'incoming'>): Promise<QemuOptions> {
    return {
      id: spec.name,
      runDir: this.runDir,
      manifest: spec.manifest,
      artifacts: spec.artifacts,
      accel: await detectAccel(this.log, spec.manifest.architecture),
      memoryMiB: spec.memoryMiB,
      cpus: spec.cpus,
      cpuQuotaPercent: spec.cpuQuotaPercent,
      hostPorts: spec.hostPorts,
      ...extra,
    };
  }
}
