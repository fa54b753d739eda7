#!/usr/bin/env node
// Builds the workload images from their sources in images/<name>/ into <out>/<name>/: the
// artifacts and manifest.json (the source-controlled image.json with each artifact's sha256 and
// size filled in). Reproducible: the same sources and toolchain give the same bytes.
//
//   node scripts/build-images.mjs [--force] [--out DIR]     (DIR defaults to images/build)
//
// An image whose output was built from the same inputs is skipped unless --force.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const IMAGES = fileURLToPath(new URL('../images/', import.meta.url));
const THIS_SCRIPT = fileURLToPath(import.meta.url);
/** Where a build records what it was built from, next to the manifest. */
const INPUTS_FILE = 'inputs.sha256';
/** Every file in the initramfs gets this mtime (the epoch). */
const FIXED_MTIME = 0;
/** The NIC driver the linux image needs for `-device virtio-net-pci`; their dependencies come from modinfo. */
const LINUX_MODULES = ['virtio_pci', 'virtio_net'];

class BuildError extends Error {}

const images = {
  'unikernel-ticker': { tools: unikernelTools, inputs: () => [run('gcc', ['--version']), run('ld', ['--version'])], build: buildUnikernel },
  'linux-service': { tools: linuxTools, inputs: () => [debianKernel().version], build: buildLinuxService },
};

function main() {
  const { values } = parseArgs({ options: { force: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const outRoot = resolve(values.out ?? join(IMAGES, 'build'));
  mkdirSync(outRoot, { recursive: true });
  for (const [name, image] of Object.entries(images)) {
    const outDir = join(outRoot, name);
    for (const [command, pkg] of image.tools()) requireTool(command, pkg);
    const fingerprint = inputsFingerprint(name, image.inputs());
    if (!values.force && readIfExists(join(outDir, INPUTS_FILE)) === fingerprint && existsSync(join(outDir, 'manifest.json'))) {
      console.log(`${name}: up to date (${shown(outDir)})`);
      continue;
    }
    const started = performance.now();
    // Built beside the output and renamed into place: an interrupted build leaves no half image.
    const staging = mkdtempSync(join(outRoot, `.${name}-`));
    chmodSync(staging, 0o755);
    try {
      const template = JSON.parse(readFileSync(join(IMAGES, name, 'image.json'), 'utf8'));
      const manifest = image.build(join(IMAGES, name), staging, template);
      manifest.artifacts = manifest.artifacts.map((artifact) => ({ ...artifact, ...digestOf(join(staging, artifact.file)) }));
      writeFileSync(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      writeFileSync(join(staging, INPUTS_FILE), fingerprint);
      rmSync(outDir, { recursive: true, force: true });
      try {
        renameSync(staging, outDir);
      } catch (error) {
        // Another build of the same inputs finished first (test files build in parallel): same bytes.
        if (!['ENOTEMPTY', 'EEXIST'].includes(error.code) || readIfExists(join(outDir, INPUTS_FILE)) !== fingerprint) throw error;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    console.log(`${name}: built in ${Math.round(performance.now() - started)} ms (${shown(outDir)})`);
  }
}

function unikernelTools() {
  return [['gcc', 'gcc'], ['as', 'binutils'], ['ld', 'binutils']];
}

/** A freestanding 32-bit multiboot kernel: QEMU's -kernel loader only takes ELF32 for multiboot. */
function buildUnikernel(sourceDir, outDir, template) {
  const sources = readdirSync(sourceDir).filter((file) => /\.(c|S)$/.test(file)).sort();
  const objects = mkdtempSync(join(tmpdir(), 'unikernel-obj-'));
  try {
    const cflags = [
      '-m32', '-march=i686', '-mgeneral-regs-only', '-ffreestanding', '-nostdlib', '-fno-pic', '-fno-pie', '-fno-stack-protector',
      '-fno-asynchronous-unwind-tables', '-fno-tree-loop-distribute-patterns', '-O2', '-Wall', '-Wextra',
      `-ffile-prefix-map=${sourceDir}=.`,
    ];
    const built = sources.map((source) => {
      const object = join(objects, `${source}.o`);
      run('gcc', [...cflags, '-c', source, '-o', object], { cwd: sourceDir });
      return object;
    });
    const file = template.artifacts[0].file;
    run('ld', ['-m', 'elf_i386', '-T', 'linker.ld', '--build-id=none', '-z', 'max-page-size=0x1000', '-z', 'noexecstack', '--no-warn-rwx-segments', '-o', join(outDir, file), ...built], { cwd: sourceDir });
  } finally {
    rmSync(objects, { recursive: true, force: true });
  }
  return template;
}

function linuxTools() {
  return [['dpkg-query', 'dpkg'], ['modinfo', 'kmod'], ['cpio', 'cpio'], ['gzip', 'gzip'], ['/bin/busybox', 'busybox-static']];
}

/** The kernel Debian's linux-image-amd64 points at, e.g. 6.1.0-50-amd64. */
function debianKernel() {
  const depends = run('dpkg-query', ['-W', '-f', '${Depends}', 'linux-image-amd64'], { missing: 'linux-image-amd64 is not installed: apt-get install linux-image-amd64' });
  const version = /linux-image-(\S+)/.exec(depends)?.[1];
  const image = `/boot/vmlinuz-${version}`;
  if (!version || !existsSync(image) || !existsSync(`/lib/modules/${version}/modules.dep`)) {
    throw new BuildError(`linux-image-amd64 depends on "${depends}", but ${image} or /lib/modules/${version} is missing: apt-get install --reinstall linux-image-amd64`);
  }
  return { version, image };
}

/** Module files for `names` and everything they depend on, dependencies first. */
function modulesInLoadOrder(version, names) {
  const ordered = [];
  const visit = (name) => {
    if (ordered.some((module) => module.name === name)) return;
    const depends = run('modinfo', ['-k', version, '-F', 'depends', name]).trim();
    for (const dependency of depends.split(',').filter(Boolean).sort()) visit(dependency);
    ordered.push({ name, file: run('modinfo', ['-k', version, '-n', name]).trim() });
  };
  for (const name of names) visit(name);
  return ordered;
}

/** Debian's kernel as is, and a busybox initramfs whose /init brings up virtio-net and serves HTTP. */
function buildLinuxService(sourceDir, outDir, template) {
  const kernel = debianKernel();
  const [kernelArtifact, initrdArtifact] = template.artifacts;
  copyFileSync(kernel.image, join(outDir, kernelArtifact.file));

  const root = mkdtempSync(join(tmpdir(), 'linux-service-root-'));
  try {
    for (const dir of ['bin', 'dev', 'proc', 'sys', 'tmp', `lib/modules/${kernel.version}`]) mkdirSync(join(root, dir), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    symlinkSync('busybox', join(root, 'bin/sh'));
    const modules = modulesInLoadOrder(kernel.version, LINUX_MODULES);
    for (const module of modules) copyFileSync(module.file, join(root, 'lib/modules', kernel.version, basename(module.file)));
    writeFileSync(join(root, 'lib/modules', kernel.version, 'load-order'), modules.map((module) => `${basename(module.file)}\n`).join(''));
    copyFileSync(join(sourceDir, 'init'), join(root, 'init'));
    copyTree(join(sourceDir, 'www'), join(root, 'www'));

    const executables = new Set(['init', 'bin/busybox', ...readdirSync(join(sourceDir, 'www/cgi-bin')).map((file) => `www/cgi-bin/${file}`)]);
    const entries = listTree(root);
    for (const entry of entries) {
      const path = join(root, entry);
      const stats = lstatSync(path);
      if (!stats.isSymbolicLink()) chmodSync(path, stats.isDirectory() || executables.has(entry) ? 0o755 : 0o644);
      lutimesSync(path, FIXED_MTIME, FIXED_MTIME);
    }
    const archive = run('cpio', ['--quiet', '--null', '-o', '-H', 'newc', '--reproducible', '-R', '0:0'], { cwd: root, input: Buffer.from(entries.map((entry) => `${entry}\0`).join('')), binary: true });
    writeFileSync(join(outDir, initrdArtifact.file), run('gzip', ['-n', '-9', '-c'], { input: archive, binary: true }));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return { ...template, version: `${template.version}+${kernel.version}` };
}

function copyTree(from, to) {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.isDirectory()) copyTree(join(from, entry.name), join(to, entry.name));
    else copyFileSync(join(from, entry.name), join(to, entry.name));
  }
}

/** Every path under `root`, relative, in byte order (a directory before what it holds). */
function listTree(root) {
  return readdirSync(root, { recursive: true }).map(String).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function inputsFingerprint(name, extra) {
  const hash = createHash('sha256').update(readFileSync(THIS_SCRIPT));
  const sourceDir = join(IMAGES, name);
  for (const file of listTree(sourceDir)) {
    const path = join(sourceDir, file);
    hash.update(`\0${file}\0`);
    if (statSync(path).isFile()) hash.update(readFileSync(path));
  }
  for (const value of extra) hash.update(`\0${value}`);
  return `${hash.digest('hex')}\n`;
}

function digestOf(file) {
  const bytes = readFileSync(file);
  return { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
}

function shown(dir) {
  const path = relative(process.cwd(), dir);
  return path.startsWith('..') ? dir : path;
}

function readIfExists(file) {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

function requireTool(command, pkg) {
  const found = command.includes('/') ? existsSync(command) : (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
  if (!found) throw new BuildError(`${command} is missing: apt-get install ${pkg}`);
}

function run(command, args, { cwd, input, binary = false, missing } = {}) {
  const result = spawnSync(command, args, { cwd, input, maxBuffer: 256 << 20, encoding: binary ? 'buffer' : 'utf8' });
  if (result.error) throw new BuildError(`${command}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new BuildError(missing ?? `${command} ${args.join(' ')} failed (exit ${result.status}):\n${String(result.stderr).trim()}`);
  }
  return result.stdout;
}

try {
  main();
} catch (error) {
  if (!(error instanceof BuildError)) throw error;
  console.error(`build-images: ${error.message}`);
  process.exit(1);
}
