// The production node_modules for one architecture: installed from the lock file with npm
// (--cpu/--os pick that architecture's optional binaries), native modules cross-compiled with
// Debian's cross compilers against the bundled Node's headers, then pruned of what only builds
// or other platforms use. Kept in the cache under a hash of everything it depends on.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE, log, output, PackageError, ROOT, run } from './common.mjs';
import { elfMachine } from './elf.mjs';

/**
 * Native modules built from source: better-sqlite3 is required (the twin lives in it); the HCI
 * socket (BLE) is optional, and a package without it says why Bluetooth is unavailable.
 * noble itself compiles nothing on Linux; serialport and usb ship prebuilt binaries per platform.
 */
const NATIVE = [
  { name: 'better-sqlite3', required: true, binary: 'build/Release/better_sqlite3.node', gyp: [] },
  {
    name: '@abandonware/bluetooth-hci-socket',
    required: false,
    binary: 'build/Release/bluetooth_hci_socket.node',
    // Variables node-pre-gyp would pass; its binding.gyp copies the result to lib/binding, which
    // nothing loads (lib/native.js takes build/Release), so it is removed after the build.
    gyp: (dir) => ['--module_name=bluetooth_hci_socket', `--module_path=${dir}/lib/binding`],
    leftovers: ['lib/binding'],
  },
];

/** Left by builds and package authors, used by nothing at run time. */
const BUILD_LEFTOVERS = ['build/Release/obj.target', 'build/Release/.deps', 'build/Release/obj', 'build/Release/test_extension.node', 'deps', 'src', 'build/node_gyp_bins'];
/**
 * Packages needed only to build or install (node-gyp and friends), a type checker peer
 * (valibot's typescript), and sources (usb's libusb, built into its prebuilt binaries):
 * nothing requires them at run time.
 */
const BUILD_ONLY = ['typescript', 'node-gyp', 'prebuild-install', '@mapbox/node-pre-gyp', 'usb/libusb'];
const DOT_FILES = /^\.(npmignore|gitignore|gitattributes|gitmodules|eslintrc.*|eslintignore|prettierrc.*|travis\.yml|editorconfig|jshintrc|nycrc|github|circleci)$/;

function npmGyp() {
  const npmRoot = output('npm', ['root', '-g']).trim();
  const gyp = join(npmRoot, 'npm/node_modules/node-gyp/bin/node-gyp.js');
  if (!existsSync(gyp)) throw new PackageError(`node-gyp not found at ${gyp} (it comes with npm)`);
  return gyp;
}

function cacheKey(arch, target) {
  const hash = createHash('sha256');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  hash.update(JSON.stringify([arch, target, pkg.dependencies, pkg.optionalDependencies]));
  hash.update(readFileSync(join(ROOT, 'package-lock.json')));
  hash.update(readFileSync(new URL(import.meta.url)));
  return hash.digest('hex').slice(0, 16);
}

/** The target's own strip: the host's binutils read only its own architecture. */
export const stripCommand = (target) => (target.cross ? `${target.cross}-strip` : 'strip');

function buildNative(dir, module, target, nodeDir) {
  const moduleDir = join(dir, 'node_modules', module.name);
  if (!existsSync(moduleDir)) return `${module.name} is not installed`;
  // npm_config_nodedir (this machine's npmrc says /usr, the host's headers) would win over --nodedir.
  const env = { ...process.env, npm_config_nodedir: nodeDir, npm_config_arch: target.gypArch };
  if (target.cross) Object.assign(env, { CC: `${target.cross}-gcc`, CXX: `${target.cross}-g++`, LINK: `${target.cross}-g++`, AR: `${target.cross}-ar`, CC_host: 'gcc', CXX_host: 'g++' });
  const extra = typeof module.gyp === 'function' ? module.gyp(moduleDir) : module.gyp;
  log(`building ${module.name} for ${target.gypArch}${target.cross ? ` with ${target.cross}-g++` : ''}`);
  try {
    run(process.execPath, [npmGyp(), 'rebuild', '--release', `--arch=${target.gypArch}`, `--nodedir=${nodeDir}`, '-j', 'max', ...extra], { cwd: moduleDir, env, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (error) {
    return error.message;
  }
  const binary = join(moduleDir, module.binary);
  const machine = existsSync(binary) ? elfMachine(binary) : undefined;
  if (machine !== target.elfMachine) return `${module.binary} was built for ${machine ?? 'nothing'}, not ${target.elfMachine}`;
  for (const leftover of [...BUILD_LEFTOVERS, ...(module.leftovers ?? [])]) rmSync(join(moduleDir, leftover), { recursive: true, force: true });
  // Debug symbols are most of a native module's size; a gateway has no debugger for them.
  run(stripCommand(target), ['--strip-unneeded', binary]);
  return undefined;
}

/** Another platform's prebuilt binaries, dot files, and executable bits (nothing in node_modules is run directly). */
function prune(dir, target) {
  const removed = [];
  const walk = (path) => {
    for (const entry of readdirSync(path)) {
      const full = join(path, entry);
      const stat = lstatSync(full);
      if (DOT_FILES.test(entry) || entry.endsWith('~')) {
        rmSync(full, { recursive: true, force: true });
      } else if (stat.isDirectory()) {
        if (entry === 'prebuilds') {
          for (const platform of readdirSync(full)) if (platform !== target.prebuilds) rmSync(join(full, platform), { recursive: true, force: true });
        }
        walk(full);
      } else if (stat.isFile()) {
        // musl builds sit beside glibc ones in prebuilds/linux-*; Debian is glibc.
        const machine = elfMachine(full);
        if (machine !== undefined && (machine !== target.elfMachine || /musl/.test(entry))) {
          rmSync(full);
          removed.push(full.slice(dir.length + 1));
        } else chmodSync(full, 0o644);
      }
    }
  };
  walk(join(dir, 'node_modules'));
  return removed;
}

/** `<dir>/node_modules` for `arch`; `notes` says what was left out and why. */
export function productionModules(arch, target, nodeDir) {
  const dir = `${CACHE}/modules/${arch}-${cacheKey(arch, target)}`;
  if (existsSync(join(dir, 'notes.json'))) return { dir, notes: JSON.parse(readFileSync(join(dir, 'notes.json'), 'utf8')) };
  const work = `${dir}.building`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(ROOT, file), join(work, file));
  log(`installing production modules for ${arch}`);
  // Not `npm ci`: it refuses a lock file without entries for optional platform packages this
  // registry lacks (node-unix-socket-linux-arm64-gnu, …); install takes the locked versions all the same.
  run('npm', ['install', '--omit=dev', '--omit=peer', '--ignore-scripts', '--no-audit', '--no-fund', '--no-save', '--os=linux', `--cpu=${target.npmCpu}`, '--libc=glibc'], {
    cwd: work,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const notes = [];
  for (const module of NATIVE) {
    const failed = buildNative(work, module, target, nodeDir);
    if (!failed) continue;
    if (module.required) throw new PackageError(`${module.name} for ${arch}: ${failed}`);
    rmSync(join(work, 'node_modules', module.name), { recursive: true, force: true });
    notes.push(`${module.name} left out (${failed}): BLE devices report Bluetooth unavailable`);
  }
  const unixSocketBinary = `node-unix-socket-linux-${target.npmCpu === 'arm' ? 'arm-gnueabihf' : `${target.npmCpu}-gnu`}`;
  if (!existsSync(join(work, 'node_modules', unixSocketBinary))) {
    notes.push('node-unix-socket has no binary for this architecture on the registry: the wpa_supplicant WiFi backend is unavailable (networkmanager works)');
  }
  for (const name of BUILD_ONLY) rmSync(join(work, 'node_modules', name), { recursive: true, force: true });
  const removed = prune(work, target);
  if (removed.length) notes.push(`removed ${removed.length} binaries for other platforms`);
  // The staging files npm needed; the tree is what ships.
  for (const file of ['package.json', 'package-lock.json', 'node_modules/.package-lock.json']) rmSync(join(work, file), { force: true });
  rmSync(join(work, 'node_modules/.bin'), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  // Written last: its presence marks a complete build.
  writeFileSync(join(dir, 'notes.json'), JSON.stringify(notes));
  return { dir, notes };
}
