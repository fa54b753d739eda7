/** QEMU's command line for a guest: its options, checked before anything runs, and the files it names. */
import { join } from 'node:path';
import type { ArtifactPaths, ImageManifest } from '../types.js';
import type { Accel } from './accel.js';

/** sun_path is 108 bytes, NUL included. */
const MAX_UNIX_SOCKET_PATH = 107;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface QemuOptions {
  /** Names the files in runDir (`<id>.qmp`, `<id>.console`). */
  id: string;
  runDir: string;
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
  accel: Accel;
  /** Guest RAM; the manifest's by default. */
  memoryMiB?: number;
  /** Guest vCPUs; the manifest's by default. */
  cpus?: number;
  /** CPU time the whole QEMU process may use, 100 = one host core (a cgroup cpu controller). */
  cpuQuotaPercent?: number;
  /** User-networking port forwards 127.0.0.1:host → guest (linux images). */
  hostPorts?: Array<{ guest: number; host: number }>;
  /** Wait for `migrateIncoming` instead of booting. */
  incoming?: 'defer';
  /** Start from a file written by `snapshot` instead of booting. */
  snapshot?: string;
}

/**
 * QEMU's arguments for these options. The device set depends on nothing but the image and the
 * caps, so that a migration target started with the same options (plus `incoming`) matches
 * its source; host ports are backend configuration and may differ between the two.
 */
export function qemuArgs(options: QemuOptions): string[] {
  checkOptions(options);
  const { manifest, artifacts } = options;
  const args = ['-name', options.id, '-nodefaults', '-no-user-config', '-display', 'none', '-accel', options.accel];
  if (manifest.architecture === 'x86_64') args.push('-machine', 'pc');
  else args.push('-machine', manifest.aarch64?.machine ?? 'virt', '-cpu', options.accel === 'kvm' ? (manifest.aarch64?.cpu ?? 'host') : 'max');
  args.push('-m', String(options.memoryMiB ?? manifest.memoryMiB), '-smp', String(options.cpus ?? manifest.cpus));
  // A guest that resets (a crash, a triple fault) ends QEMU, so the restart policy sees it instead of a silent reboot loop.
  args.push('-no-reboot');
  args.push('-serial', `file:${consolePathOf(options)}`, '-qmp', `unix:${qemuOptionValue(qmpPathOf(options))},server=on,wait=off`);
  args.push('-kernel', artifacts.kernel!);
  if (manifest.kind === 'linux') {
    if (artifacts.initrd) args.push('-initrd', artifacts.initrd);
    if (manifest.cmdline) args.push('-append', manifest.cmdline);
    const forwards = (options.hostPorts ?? []).map(({ host, guest }) => `,hostfwd=tcp:127.0.0.1:${host}-:${guest}`).join('');
    args.push('-netdev', `user,id=n0${forwards}`, '-device', 'virtio-net-pci,netdev=n0');
  }
  // snapshot=on: the image's disk stays as its digest says; the guest writes to a throwaway overlay.
  if (artifacts.disk) args.push('-drive', `file=${qemuOptionValue(artifacts.disk)},if=virtio,format=raw,snapshot=on`);
  if (options.incoming) args.push('-incoming', 'defer');
  // The snapshot file is handed to QEMU already open, as its fd 3 (see QemuProcess.start).
  if (options.snapshot) args.push('-incoming', 'fd:3');
  return args;
}

function checkOptions(options: QemuOptions): void {
  const { manifest, artifacts } = options;
  const problems: string[] = [];
  if (!SAFE_ID.test(options.id)) problems.push(`id ${JSON.stringify(options.id)} must be 1-64 letters, digits, '.', '_' or '-'`);
  if (qmpPathOf(options).length > MAX_UNIX_SOCKET_PATH) problems.push(`runDir ${options.runDir} is too long for a unix socket path`);
  for (const [name, value] of [['memoryMiB', options.memoryMiB ?? manifest.memoryMiB], ['cpus', options.cpus ?? manifest.cpus]] as const) {
    if (!Number.isInteger(value) || value < 1) problems.push(`${name} must be a positive integer, not ${value}`);
  }
  if (options.cpuQuotaPercent !== undefined && !(options.cpuQuotaPercent >= 1)) problems.push(`cpuQuotaPercent must be at least 1, not ${options.cpuQuotaPercent}`);
  if (!artifacts.kernel) problems.push('the image has no kernel artifact');
  if (manifest.kind === 'linux' && !artifacts.initrd && !artifacts.disk) problems.push('a linux image needs an initrd or a disk artifact');
  if (manifest.kind !== 'linux' && options.hostPorts?.length) problems.push(`a ${manifest.kind} image has no network device to forward host ports to`);
  for (const { host, guest } of options.hostPorts ?? []) {
    if (![host, guest].every((port) => Number.isInteger(port) && port >= 1 && port <= 65535)) problems.push(`port forward ${host} → ${guest} is not a pair of TCP ports`);
  }
  if (options.incoming && options.snapshot) problems.push('incoming and snapshot exclude each other');
  if (problems.length > 0) throw new Error(`cannot run ${options.id} (${manifest.name}): ${problems.join('; ')}`);
}

/** QEMU splits `key=value,…` options at commas; a comma inside a value is written twice. */
function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

export const consolePathOf = (options: Pick<QemuOptions, 'runDir' | 'id'>) => join(options.runDir, `${options.id}.console`);
export const qmpPathOf = (options: Pick<QemuOptions, 'runDir' | 'id'>) => join(options.runDir, `${options.id}.qmp`);
