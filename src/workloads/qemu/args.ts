/** QEMU's command line for a guest: its options, checked before anything runs, and the files it names. */
import { join } from 'node:path';
import { guestSize, type ArtifactPaths, type GuestNetwork, type ImageManifest } from '../types.js';
import type { Accel } from './accel.js';

/** sun_path is 108 bytes, NUL included. */
const MAX_UNIX_SOCKET_PATH = 107;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A machine or CPU model name as QEMU's own are spelled (`virt`, `cortex-a72`, `pc-q35-7.2`): nothing its option parser splits at. */
export const QEMU_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** The fds QEMU is spawned with besides stdio (see QemuProcess.start). */
export const SNAPSHOT_FD = 3;
export const CONSOLE_FD = 4;

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
  /** Whether the guest reaches the host and the LAN (`lan`) or only answers on its forwarded ports; restricted by default. */
  network?: GuestNetwork;
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
  else args.push('-machine', aarch64Machine(manifest, options.accel), '-cpu', options.accel === 'kvm' ? (manifest.aarch64?.cpu ?? 'host') : 'max');
  const { memoryMiB, cpus } = guestSize(options, manifest);
  args.push('-m', String(memoryMiB), '-smp', String(cpus));
  // A guest that resets (a crash, a triple fault) ends QEMU, so the restart policy sees it instead of a silent reboot loop.
  args.push('-no-reboot');
  // The console goes into a socket the agent reads (console.ts), so that the agent can bound the file it ends up in.
  args.push('-chardev', `socket,id=console,fd=${CONSOLE_FD}`, '-serial', 'chardev:console');
  args.push('-qmp', `unix:${qemuOptionValue(qmpPathOf(options))},server=on,wait=off`);
  args.push('-kernel', artifacts.kernel!);
  if (manifest.kind === 'linux') {
    if (artifacts.initrd) args.push('-initrd', artifacts.initrd);
    if (manifest.cmdline) args.push('-append', manifest.cmdline);
    const forwards = (options.hostPorts ?? []).map(({ host, guest }) => `,hostfwd=tcp:127.0.0.1:${host}-:${guest}`).join('');
    // restrict=on: the guest's packets go nowhere — not to the host's loopback (10.0.2.2: the API, the broker), not to the LAN —
    // while connections to its forwarded ports still come in.
    const restrict = options.network === 'lan' ? 'off' : 'on';
    args.push('-netdev', `user,id=n0,restrict=${restrict}${forwards}`, '-device', 'virtio-net-pci,netdev=n0');
  }
  // snapshot=on: the image's disk stays as its digest says; the guest writes to a throwaway overlay.
  if (artifacts.disk) args.push('-drive', `file=${qemuOptionValue(artifacts.disk)},if=virtio,format=raw,snapshot=on`);
  if (options.incoming) args.push('-incoming', 'defer');
  // The snapshot file is handed to QEMU already open (see QemuProcess.start).
  if (options.snapshot) args.push('-incoming', `fd:${SNAPSHOT_FD}`);
  return args;
}

/** Under KVM the virt machine must model the host's own interrupt controller (a Raspberry Pi's GICv2, a server's GICv3). */
function aarch64Machine(manifest: ImageManifest, accel: Accel): string {
  const machine = manifest.aarch64?.machine ?? 'virt';
  return accel === 'kvm' && /^virt(-|$)/.test(machine) ? `${machine},gic-version=host` : machine;
}

function checkOptions(options: QemuOptions): void {
  const { manifest, artifacts } = options;
  const problems: string[] = [];
  if (!SAFE_ID.test(options.id)) problems.push(`id ${JSON.stringify(options.id)} must be 1-64 letters, digits, '.', '_' or '-'`);
  if (qmpPathOf(options).length > MAX_UNIX_SOCKET_PATH) problems.push(`runDir ${options.runDir} is too long for a unix socket path`);
  for (const [name, value] of [['aarch64.machine', manifest.aarch64?.machine], ['aarch64.cpu', manifest.aarch64?.cpu]] as const) {
    if (value !== undefined && !QEMU_NAME.test(value)) problems.push(`${name} ${JSON.stringify(value)} is not a QEMU model name`);
  }
  for (const [name, value] of Object.entries(guestSize(options, manifest))) {
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

export const qmpPathOf = (options: Pick<QemuOptions, 'runDir' | 'id'>) => join(options.runDir, `${options.id}.qmp`);
