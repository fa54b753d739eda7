/**
 * The QEMU runtime: each guest is a QEMU process with its sockets and console in the run
 * directory and its pidfile in the agent's data dir, under KVM where KVM really runs guests,
 * else TCG.
 */
import type { Logger } from '../../log.js';
import type { Guest, GuestSpec, IncomingGuest, Runtime, StreamListen } from '../runtime.js';
import { detectAccel } from './accel.js';
import type { QemuOptions } from './args.js';
import { consolePathOf, consoleTail } from './console.js';
import { endLeftovers } from './pidfiles.js';
import { QemuProcess, type QemuProcessOptions } from './process.js';

/** What every guest of this runtime shares: where its files go. */
export type GuestFiles = Pick<QemuProcessOptions, 'runDir' | 'pidDir' | 'consoleMaxBytes'>;

export class QemuRuntime implements Runtime {
  constructor(
    private readonly files: GuestFiles,
    private readonly log: Logger,
  ) {}

  async start(spec: GuestSpec, snapshot?: string): Promise<Guest> {
    return QemuProcess.start(await this.options(spec, { snapshot }), this.log.child({ workload: spec.name }));
  }

  async incoming(spec: GuestSpec, listen: StreamListen): Promise<IncomingGuest> {
    const qemu = await QemuProcess.start(await this.options(spec, { incoming: 'defer' }), this.log.child({ workload: spec.name }));
    try {
      return { guest: qemu, port: await qemu.listenForMigration(listen) };
    } catch (error) {
      await qemu.quit().catch(() => undefined);
      throw error;
    }
  }

  /** QEMUs are found by the pidfiles this runtime wrote: never by the run directory, which another agent may share. */
  reclaim(): Promise<void> {
    return endLeftovers(this.files.pidDir, this.log);
  }

  consoleTail(name: string, bytes: number): string {
    return consoleTail(consolePathOf({ runDir: this.files.runDir, id: name }), bytes);
  }

  private async options(spec: GuestSpec, extra: Pick<QemuOptions, 'snapshot' | 'incoming'>): Promise<QemuProcessOptions> {
    return {
      id: spec.name,
      ...this.files,
      manifest: spec.manifest,
      artifacts: spec.artifacts,
      accel: await detectAccel(this.log, spec.manifest.architecture),
      memoryMiB: spec.memoryMiB,
      cpus: spec.cpus,
      cpuQuotaPercent: spec.cpuQuotaPercent,
      hostPorts: spec.hostPorts,
      network: spec.network,
      ...extra,
    };
  }
}
