/**
 * A small VM for tests that need kernel features this machine's kernel lacks (WiFi, Bluetooth):
 * Debian's kernel under QEMU (TCG), the host's root shared read-only over 9p, a busybox
 * initramfs that switches root to it and runs one shell script. The script's output comes back
 * through the serial console, its exit code and any result files through a writable share.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync, chmodSync, symlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Modules the initramfs needs to reach the 9p share, in load order. */
const BOOT_MODULES = ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'netfs', 'fscache', '9pnet', '9pnet_virtio', '9p'];

/** Inside the guest, where the writable share appears (on the tmpfs that covers /tmp). */
export const GUEST_IO_DIR = '/tmp/vm-io';

const INIT = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${BOOT_MODULES.join(' ')}; do insmod /modules/$m.ko || echo "vm: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /mnt || echo "vm: no host root"
mount -t tmpfs tmp /mnt/tmp
mount -t tmpfs run /mnt/run
mount -t proc proc /mnt/proc
mount -t sysfs sys /mnt/sys
mount -t devtmpfs dev /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm ${'/mnt' + GUEST_IO_DIR}
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs shm /mnt/dev/shm
mount -t debugfs debugfs /mnt/sys/kernel/debug 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L io ${'/mnt' + GUEST_IO_DIR}
. ${'/mnt' + GUEST_IO_DIR}/mounts.sh
hostname edge-vm
# switch_root, not chroot: the kernel's own helpers (modprobe for crypto, firmware) must find the host's tools.
exec switch_root /mnt /bin/sh -c 'ip link set lo up; cd ${GUEST_IO_DIR}; /bin/sh ${GUEST_IO_DIR}/run.sh; echo $? > ${GUEST_IO_DIR}/exit-code; sync; echo o > /proc/sysrq-trigger; sleep 10'
`;

export interface VmResult {
  /** The script's exit code; undefined when the power was cut (`cutPowerAt`). */
  exitCode: number | undefined;
  /** What the script printed, kernel messages aside. */
  output: string;
  /** A file the script wrote under $VM_IO, or undefined. */
  file(name: string): string | undefined;
  durationMs: number;
}

export interface VmOptions {
  memoryMb?: number;
  timeoutMs?: number;
  env?: Record<string, string>;
  /**
   * Host directories to show at the same path inside (read-only). Needed for anything under
   * /tmp or /run, which the guest covers with its own tmpfs; harmless elsewhere.
   */
  shares?: string[];
  /** Called with each console line as it arrives (for logs of long scenarios). */
  onLine?: (line: string) => void;
  /**
   * Raw disk images the guest sees as /dev/vda, /dev/vdb, … (virtio-blk). With cache=writeback
   * QEMU writes into the host's page cache, which outlives QEMU: after a power cut (below) the
   * image holds what the guest wrote to its disk, and loses what was still in the guest's own
   * page cache, as a gateway's storage does when the power goes.
   */
  disks?: string[];
  /** Cuts the power at the first console line this returns true for: QEMU is killed (SIGKILL), the guest gets no shutdown. */
  cutPowerAt?: (line: string) => boolean;
}

/** The newest Debian kernel installed, with its modules directory. */
export function guestKernel(): { image: string; version: string } {
  const versions = readdirSync('/boot')
    .filter((name) => name.startsWith('vmlinuz-'))
    .map((name) => name.slice('vmlinuz-'.length))
    .filter((version) => existsSync(join('/lib/modules', version, 'modules.dep')))
    .sort();
  const version = versions.at(-1);
  if (!version) throw new Error('no Debian kernel with modules in /boot (apt-get install linux-image-amd64)');
  return { image: join('/boot', `vmlinuz-${version}`), version };
}

function findModule(version: string, name: string): string {
  const found = execFileSync('find', [join('/lib/modules', version, 'kernel'), '-name', `${name}.ko`], { encoding: 'utf8' }).trim().split('\n')[0];
  if (!found) throw new Error(`kernel module ${name}.ko not found for ${version}`);
  return found;
}

/** Builds the initramfs once per kernel and init script; later runs reuse it. */
export function ensureInitramfs(version: string): string {
  const key = createHash('sha256').update(version).update(INIT).digest('hex').slice(0, 12);
  const cacheDir = join(tmpdir(), 'edge-agent-vm');
  const image = join(cacheDir, `initramfs-${key}.cpio`);
  if (existsSync(image)) return image;
  mkdirSync(cacheDir, { recursive: true });
  const root = mkdtempSync(join(cacheDir, 'root-'));
  try {
    for (const dir of ['bin', 'modules', 'proc', 'sys', 'dev', 'mnt']) mkdirSync(join(root, dir));
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    symlinkSync('busybox', join(root, 'bin/sh'));
    for (const name of BOOT_MODULES) copyFileSync(findModule(version, name), join(root, 'modules', `${name}.ko`));
    writeFileSync(join(root, 'init'), INIT);
    chmodSync(join(root, 'init'), 0o755);
    const files = execFileSync('find', ['.'], { cwd: root, encoding: 'utf8' });
    const archive = execFileSync('/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: root, input: files, maxBuffer: 64 << 20 });
    writeFileSync(`${image}.part`, archive);
    renameSync(`${image}.part`, image);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return image;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Boots the VM, runs `script` (sh) inside as root with `$VM_IO` as its result directory, powers off. */
export async function runInVm(script: string, options: VmOptions = {}): Promise<VmResult> {
  const kernel = guestKernel();
  const initramfs = ensureInitramfs(kernel.version);
  const io = mkdtempSync(join(tmpdir(), 'edge-agent-vm-io-'));
  const env = { VM_IO: GUEST_IO_DIR, HOME: '/tmp', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...options.env };
  const exports = Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}`);
  writeFileSync(join(io, 'run.sh'), `${exports.join('\n')}\n${script}\n`);
  const shares = options.shares ?? [];
  const mounts = shares.map((dir, index) => `mkdir -p /mnt${shellQuote(dir)}; mount -t 9p -o trans=virtio,version=9p2000.L,ro share${index} /mnt${shellQuote(dir)}`);
  writeFileSync(join(io, 'mounts.sh'), `${mounts.join('\n')}\n`);
  const args = [
    '-accel', 'tcg', '-m', String(options.memoryMb ?? 1024), '-smp', '2', '-display', 'none', '-no-reboot', '-nodefaults', '-serial', 'stdio',
    '-kernel', kernel.image, '-initrd', initramfs,
    '-append', 'console=ttyS0 panic=-1 rdinit=/init loglevel=3',
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${io},mount_tag=io,security_model=none`,
    ...shares.flatMap((dir, index) => ['-virtfs', `local,path=${dir},mount_tag=share${index},security_model=none,readonly=on,multidevs=remap`]),
    ...(options.disks ?? []).flatMap((image) => ['-drive', `file=${image},format=raw,if=virtio,cache=writeback`]),
  ];
  const started = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let partial = '';
  let powerCut = false;
  const onLine = (line: string) => {
    options.onLine?.(line);
    if (powerCut || !options.cutPowerAt?.(line)) return;
    powerCut = true;
    qemu.kill('SIGKILL');
  };
  const onData = (chunk: Buffer) => {
    const text = chunk.toString().replaceAll('\r', '');
    output += text;
    if (!options.onLine && !options.cutPowerAt) return;
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) onLine(line);
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);
  const timeoutMs = options.timeoutMs ?? 180_000;
  const timer = setTimeout(() => qemu.kill('SIGKILL'), timeoutMs);
  const exit = await new Promise<number | string>((resolve, reject) => {
    qemu.once('error', reject);
    qemu.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
  }).finally(() => clearTimeout(timer));
  const durationMs = performance.now() - started;
  try {
    const read = (name: string) => (existsSync(join(io, name)) ? readFileSync(join(io, name), 'utf8') : undefined);
    const exitCode = read('exit-code');
    if (exitCode === undefined && !powerCut) {
      const why = exit === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `QEMU exited with ${exit}`;
      throw new Error(`VM run did not finish: ${why}\n${output.slice(-4000)}`);
    }
    const files = new Map<string, string>();
    for (const name of readdirSync(io)) files.set(name, readFileSync(join(io, name), 'utf8'));
    return { exitCode: exitCode === undefined ? undefined : Number(exitCode.trim()), output, file: (name) => files.get(name), durationMs };
  } finally {
    rmSync(io, { recursive: true, force: true });
  }
}
