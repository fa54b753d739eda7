/**
 * The shipped workload images: built from source by scripts/build-images.mjs (reproducibly),
 * their manifests and digests checked by src/workloads/image.ts, and both booted under real QEMU
 * (TCG): the unikernel ticks on COM1 without spinning the CPU, the Linux service VM answers HTTP.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkRunnable, hostArchitecture, ImageError, ImageStore, parseImageManifest, verifyArtifacts } from '../../src/workloads/image.js';
import type { ImageManifest } from '../../src/workloads/types.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT, tempDir } from '../support/agent.js';
import { thrown } from '../support/errors.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const BUILD = join(ROOT, 'images/build');
const BUILD_SCRIPT = join(ROOT, 'scripts/build-images.mjs');
const IMAGE_NAMES = ['unikernel-ticker', 'linux-service'];
const TICK = /unikernel boot=([0-9a-f]{16}) tick=(\d+) sum=([0-9a-f]{8}) mem=(\w+)/g;

function buildImages(...args: string[]): string {
  const result = spawnSync(process.execPath, [BUILD_SCRIPT, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`build-images ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

function manifestOf(name: string, buildDir = BUILD): ImageManifest {
  const file = join(buildDir, name, 'manifest.json');
  return parseImageManifest(JSON.parse(readFileSync(file, 'utf8')), file);
}

const temps: string[] = [];
function temp(prefix: string): string {
  const dir = tempDir(prefix);
  temps.push(dir);
  return dir;
}

beforeAll(() => {
  buildImages();
}, 300_000);

afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe('image manifests', () => {
  it('describe both images, and their artifacts match their digests', async () => {
    const unikernel = manifestOf('unikernel-ticker');
    expect(unikernel).toMatchObject({ runtime: 'qemu', kind: 'unikernel', architecture: 'x86_64', memoryMiB: 16, cpus: 1, ports: [] });
    expect(unikernel.artifacts.map((a) => a.role)).toEqual(['kernel']);
    expect(unikernel.aarch64).toMatchObject({ machine: 'virt', cpu: 'host', accel: 'kvm' });
    expect(unikernel.aarch64?.notes).toMatch(/AArch64 port/);

    const linux = manifestOf('linux-service');
    expect(linux).toMatchObject({ runtime: 'qemu', kind: 'linux', architecture: 'x86_64', memoryMiB: 128, cpus: 1, cmdline: 'console=ttyS0 panic=-1 quiet' });
    expect(linux.ports).toEqual([{ name: 'http', guest: 8080, protocol: 'tcp' }]);
    expect(linux.artifacts.map((a) => a.role)).toEqual(['kernel', 'initrd']);
    expect(linux.aarch64?.notes).toMatch(/linux-image-arm64.*busybox-static:arm64/);

    for (const name of IMAGE_NAMES) {
      const manifest = manifestOf(name);
      const paths = await verifyArtifacts(manifest, join(BUILD, name));
      for (const artifact of manifest.artifacts) expect(paths[artifact.role]).toBe(join(BUILD, name, artifact.file));
      expect(checkRunnable(manifest)).toBeUndefined();
    }
  });

  it('are refused with the reason: unknown runtime or architecture, bad digests, files outside the image', () => {
    const good = manifestOf('unikernel-ticker');
    const [kernel] = good.artifacts;
    const refusal = (input: unknown) => thrown(ConfigError, () => parseImageManifest(input, 'offer')).message;

    expect(refusal({ ...good, runtime: 'docker' })).toBe('offer: runtime: runtime "docker" is not supported (supported: qemu)');
    expect(refusal({ ...good, architecture: 'riscv64' })).toBe('offer: architecture: architecture "riscv64" is not supported (supported: x86_64, aarch64)');
    expect(refusal({ ...good, runtime: undefined })).toBe('offer: runtime: required');
    expect(refusal({ ...good, artifacts: [{ ...kernel, sha256: 'abc' }] })).toBe('offer: artifacts.0.sha256: must be a sha256 digest: 64 hex digits');
    expect(refusal({ ...good, artifacts: [{ ...kernel, file: '../../etc/shadow' }] })).toMatch(/artifacts\.0\.file: must be a plain file name/);
    expect(refusal({ ...good, artifacts: [{ ...kernel, role: 'initrd' }] })).toBe('offer: artifacts: needs a kernel artifact');
    expect(refusal({ ...good, kind: 'linux' })).toBe('offer: artifacts: a linux image needs an initrd or a disk artifact');
    expect(refusal({ ...good, extra: 1 })).toBe('offer: Unrecognized key: "extra"');
    expect(parseImageManifest({ ...good, artifacts: [{ ...kernel, sha256: kernel!.sha256.toUpperCase() }] }, 'offer').artifacts[0]!.sha256).toBe(kernel!.sha256);

    const host = hostArchitecture();
    const other = host === 'x86_64' ? 'aarch64' : 'x86_64';
    expect(checkRunnable({ ...good, architecture: other })).toBe(`image is for ${other}, this host is ${host}`);
  });

  it('a tampered, truncated or missing artifact is refused before anything is stored', async () => {
    const manifest = manifestOf('unikernel-ticker');
    const [kernel] = manifest.artifacts;
    const copy = temp('edge-agent-image-');
    cpSync(join(BUILD, 'unikernel-ticker'), copy, { recursive: true });
    const elf = join(copy, kernel!.file);
    const bytes = readFileSync(elf);
    bytes[bytes.length - 1]! ^= 0xff;
    writeFileSync(elf, bytes);

    const storeDir = temp('edge-agent-store-');
    const store = new ImageStore(storeDir);
    const tampered = await store.importImage(join(copy, 'manifest.json')).catch((error: Error) => error);
    expect(tampered).toBeInstanceOf(ImageError);
    expect((tampered as Error).message).toMatch(new RegExp(`^artifact kernel \\(unikernel.elf\\): sha256 is [0-9a-f]{64}, the manifest says ${kernel!.sha256}$`));
    expect(readdirSync(storeDir)).toEqual([]);
    expect(store.artifactsOf(manifest)).toBeUndefined();

    truncateSync(elf, 100);
    await expect(verifyArtifacts(manifest, copy)).rejects.toThrow(`artifact kernel (unikernel.elf): size is 100 bytes, the manifest says ${kernel!.size}`);
    rmSync(elf);
    await expect(verifyArtifacts(manifest, copy)).rejects.toThrow(`artifact kernel (unikernel.elf): ${elf} is missing`);
  });
});

describe('ImageStore', () => {
  it('stores verified artifacts under their digest and imports whole images', async () => {
    const storeDir = temp('edge-agent-store-');
    const store = new ImageStore(storeDir);
    const linux = manifestOf('linux-service');
    expect(store.artifactsOf(linux)).toBeUndefined();

    const { manifest, artifacts } = await store.importImage(join(BUILD, 'linux-service', 'manifest.json'));
    expect(manifest).toEqual(linux);
    for (const artifact of linux.artifacts) {
      expect(artifacts[artifact.role]).toBe(join(storeDir, artifact.sha256));
      expect(readFileSync(artifacts[artifact.role]!).equals(readFileSync(join(BUILD, 'linux-service', artifact.file)))).toBe(true);
    }
    expect(store.artifactsOf(linux)).toEqual(artifacts);

    const unikernel = manifestOf('unikernel-ticker').artifacts[0]!;
    const progress: number[] = [];
    const stored = await store.add(join(BUILD, 'unikernel-ticker', unikernel.file), unikernel, (bytes) => progress.push(bytes));
    expect(stored).toBe(store.path(unikernel.sha256));
    expect(store.has(unikernel.sha256)).toBe(true);
    expect(progress.at(-1)).toBe(unikernel.size);
    expect(readdirSync(storeDir).sort()).toEqual([...linux.artifacts.map((a) => a.sha256), unikernel.sha256].sort());
  });

  it('refuses a stream whose digest or size differs, or that breaks off, and leaves nothing behind', async () => {
    const storeDir = temp('edge-agent-store-');
    const store = new ImageStore(storeDir);
    const expected = { sha256: 'a'.repeat(64), size: 16 };

    const wrong = await store.add(Readable.from([Buffer.from('not the artifact')]), expected).catch((error: Error) => error);
    expect(wrong).toBeInstanceOf(ImageError);
    expect((wrong as Error).message).toMatch(/^sha256 is [0-9a-f]{64}, expected a{64} \(16 bytes received\)$/);
    await expect(store.add(Readable.from([Buffer.from('too short')]), expected)).rejects.toThrow(new ImageError('9 bytes received, 16 declared'));

    const broken = Readable.from(
      (async function* () {
        yield Buffer.alloc(64 * 1024);
        throw new Error('link dropped');
      })(),
    );
    await expect(store.add(broken, { ...expected, size: 1 << 20 })).rejects.toThrow('link dropped');
    expect(readdirSync(storeDir)).toEqual([]);
    expect(store.has(expected.sha256)).toBe(false);

    expect(() => store.path('../../etc/passwd')).toThrow(ImageError);
  });

  it('removes what a killed agent left half-written', () => {
    const storeDir = temp('edge-agent-store-');
    writeFileSync(join(storeDir, '.incoming-0123456789abcdef'), 'half an artifact');
    new ImageStore(storeDir);
    expect(readdirSync(storeDir)).toEqual([]);
  });
});

describe('image build', () => {
  it('is reproducible: two builds from the same sources give the same bytes', () => {
    const first = temp('edge-agent-images-a-');
    const second = temp('edge-agent-images-b-');
    buildImages('--force', '--out', first);
    buildImages('--force', '--out', second);
    for (const name of IMAGE_NAMES) {
      const manifest = readFileSync(join(first, name, 'manifest.json'), 'utf8');
      expect(readFileSync(join(second, name, 'manifest.json'), 'utf8')).toBe(manifest);
      expect(readFileSync(join(BUILD, name, 'manifest.json'), 'utf8')).toBe(manifest);
    }
  }, 120_000);

  it('skips images already built from the same sources', () => {
    expect(buildImages()).toMatch(/unikernel-ticker: up to date[\s\S]*linux-service: up to date/);
  });
});

interface Guest {
  process: ChildProcess;
  console: () => string;
  startedAt: number;
}

const guests: Guest[] = [];

afterEach(() => {
  for (const guest of guests.splice(0)) guest.process.kill('SIGKILL');
});

/** QEMU as the runtime runs it: TCG, no display, the serial console on stdout. */
function boot(manifest: ImageManifest, dir: string, extraArgs: string[] = []): Guest {
  const artifact = (role: string) => join(dir, manifest.artifacts.find((a) => a.role === role)!.file);
  const args = ['-accel', 'tcg', '-m', String(manifest.memoryMiB), '-smp', String(manifest.cpus), '-display', 'none', '-serial', 'stdio', '-no-reboot', '-kernel', artifact('kernel')];
  if (manifest.kind === 'linux') args.push('-initrd', artifact('initrd'), '-append', manifest.cmdline!);
  const qemu = spawn('qemu-system-x86_64', [...args, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  qemu.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString().replaceAll('\r', '')));
  qemu.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const guest = { process: qemu, console: () => output, startedAt: performance.now() };
  guests.push(guest);
  return guest;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100 on Linux)
}

describe('booting the images under QEMU', () => {
  it('the unikernel prints its boot id, then one tick a second with its memory checksum, and sleeps in between', async () => {
    const manifest = manifestOf('unikernel-ticker');
    const guest = boot(manifest, join(BUILD, 'unikernel-ticker'));
    const [, bootId] = await waitFor('the unikernel to start', () => /unikernel boot=([0-9a-f]{16}) started/.exec(guest.console()) ?? undefined, { timeoutMs: 20_000, intervalMs: 10 });
    console.log(`unikernel-ticker: started ${Math.round(performance.now() - guest.startedAt)} ms after QEMU was spawned`);

    const cpuBefore = cpuSeconds(guest.process.pid!);
    const wallBefore = performance.now();
    const ticks = await waitFor('four ticks', () => {
      const found = [...guest.console().matchAll(TICK)];
      return found.length >= 4 && found;
    }, { timeoutMs: 20_000 });
    const cpuShare = (cpuSeconds(guest.process.pid!) - cpuBefore) / ((performance.now() - wallBefore) / 1000);

    expect(ticks.map((t) => t[1])).toEqual(ticks.map(() => bootId));
    expect(ticks.map((t) => Number(t[2]))).toEqual([1, 2, 3, 4].slice(0, ticks.length));
    expect(ticks.map((t) => t[4])).toEqual(ticks.map(() => 'ok'));
    expect(new Set(ticks.map((t) => t[3])).size).toBe(ticks.length);
    // hlt between timer interrupts: an idle unikernel costs QEMU a few percent of a core, a busy loop 100 %.
    expect(cpuShare).toBeLessThan(0.3);
  }, 60_000);

  it('the linux service VM says it is ready and answers HTTP on its forwarded port', async () => {
    const manifest = manifestOf('linux-service');
    const port = await freePort();
    const guest = boot(manifest, join(BUILD, 'linux-service'), ['-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:8080`, '-device', 'virtio-net-pci,netdev=n0']);
    await waitFor('linux-service ready', () => guest.console().includes('linux-service ready'), { timeoutMs: 50_000, intervalMs: 10 });
    console.log(`linux-service: ready ${Math.round(performance.now() - guest.startedAt)} ms after QEMU was spawned`);

    const index = await fetch(`http://127.0.0.1:${port}/`);
    expect(index.status).toBe(200);
    expect(await index.text()).toContain('linux-service');
    const state = await (await fetch(`http://127.0.0.1:${port}/cgi-bin/state`)).text();
    expect(state).toMatch(/^boot_id=[0-9a-f-]{36} uptime=[\d.]+\n$/);
    expect(guest.console()).not.toMatch(/insmod .* failed|no eth0/);
  }, 60_000);
});

it('the build fails with the missing tool named', () => {
  const result = spawnSync(process.execPath, [BUILD_SCRIPT, '--out', temp('edge-agent-images-')], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });
  expect(result.status).toBe(1);
  expect(result.stderr).toBe('build-images: gcc is missing: apt-get install gcc\n');
  expect(existsSync(join(BUILD, 'unikernel-ticker', 'manifest.json'))).toBe(true);
});
