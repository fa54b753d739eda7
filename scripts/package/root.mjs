// Minimal Debian bookworm roots of another architecture, run under qemu-user-static through
// binfmt_misc: debootstrap's first stage on the host, its second stage inside the root. The
// pristine root is built once into the cache; each test run works on a fresh copy of it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { CACHE, log, PackageError, run } from './common.mjs';

const MIRROR_FILE = '/etc/apt/sources.list.d/debian.sources';
const FALLBACK_MIRROR = 'http://deb.debian.org/debian';
const BINFMT = '/proc/sys/fs/binfmt_misc';

/** The host's Debian mirror: the one apt already uses here. */
function mirror() {
  if (!existsSync(MIRROR_FILE)) return FALLBACK_MIRROR;
  return /^URIs:\s*(\S+)/m.exec(readFileSync(MIRROR_FILE, 'utf8'))?.[1] ?? FALLBACK_MIRROR;
}

/** binfmt_misc mounted and the target's interpreter registered, so the root's binaries run. */
export function ensureEmulation(target) {
  if (!target.qemu) return;
  if (!existsSync(`/usr/bin/${target.qemu}`)) throw new PackageError(`${target.qemu} is missing: apt-get install qemu-user-static binfmt-support`);
  if (!existsSync(`${BINFMT}/register`)) run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]);
  const entry = target.qemu.replace(/-static$/, '');
  if (!existsSync(`${BINFMT}/${entry}`)) run('update-binfmts', ['--enable', entry]);
}

/** The pristine root for `arch` with `packages` installed, built on first use. */
export function baseRoot(arch, target, packages = []) {
  const root = `${CACHE}/roots/bookworm-${arch}`;
  ensureEmulation(target);
  if (!existsSync(`${root}/etc/debian_version`)) {
    const building = `${root}.tmp`;
    rmSync(building, { recursive: true, force: true });
    mkdirSync(`${CACHE}/roots`, { recursive: true });
    log(`debootstrap bookworm ${arch} (about 90 s emulated)`);
    const foreign = target.qemu ? ['--foreign'] : [];
    run('debootstrap', ['--variant=minbase', ...foreign, `--arch=${arch}`, 'bookworm', building, mirror()], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (target.qemu) run('chroot', [building, '/debootstrap/debootstrap', '--second-stage'], { stdio: ['ignore', 'ignore', 'inherit'] });
    renameSync(building, root);
  }
  const installed = (name) => spawnSync('chroot', [root, 'dpkg-query', '-W', '-f=${Status}', name], { encoding: 'utf8' }).stdout.startsWith('install ok installed');
  const missing = packages.filter((name) => !installed(name));
  if (missing.length) {
    log(`installing ${missing.join(' ')} into the ${arch} root`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };
    run('chroot', [root, 'apt-get', 'update', '-qq'], { env });
    run('chroot', [root, 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    run('chroot', [root, 'apt-get', 'clean']);
  }
  return root;
}

/** A fresh copy of the base root with /proc, /sys and /dev mounted; `release()` unmounts and removes it. */
export function freshRoot(arch, target, packages) {
  const base = baseRoot(arch, target, packages);
  const root = `${CACHE}/test-roots/${arch}`;
  releaseRoot(root);
  mkdirSync(`${CACHE}/test-roots`, { recursive: true });
  run('cp', ['-a', base, root]);
  run('mount', ['-t', 'proc', 'proc', `${root}/proc`]);
  run('mount', ['--rbind', '/sys', `${root}/sys`]);
  run('mount', ['--rbind', '/dev', `${root}/dev`]);
  return { root, release: () => releaseRoot(root) };
}

/** Mount points at or under `root`, deepest first. */
function mountsUnder(root) {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((point) => point && (point === root || point.startsWith(`${root}/`)))
    .sort((a, b) => b.length - a.length);
}

function releaseRoot(root) {
  // -l: a process still holding a mount (an agent that would not stop) does not keep it attached.
  for (const point of mountsUnder(root)) run('umount', ['-R', '-l', point]);
  // Removing the copy with the host's /dev or /sys still mounted inside would remove theirs.
  const left = mountsUnder(root);
  if (left.length) throw new PackageError(`still mounted, not removing ${root}: ${left.join(', ')}`);
  rmSync(root, { recursive: true, force: true });
}
