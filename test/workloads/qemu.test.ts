/**
 * The QEMU runtime against real QEMU under TCG, with the images the repository builds: the
 * unikernel ticker (a boot id and a tick count on COM1, state that must survive a migration) and
 * the Linux service VM (busybox httpd on guest port 8080 behind user networking).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { detectAccel, probeAccel } from '../../src/workloads/qemu/accel.js';
import { qemuArgs, type QemuOptions } from '../../src/workloads/qemu/args.js';
import { QemuProcess, type QemuProcessOptions } from '../../src/workloads/qemu/process.js';
import { QmpError } from '../../src/workloads/qemu/qmp.js';
import type { ArtifactPaths, ImageManifest } from '../../src/workloads/types.js';
import { ROOT, tempDir } from '../support/agent.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

const BUILD = join(ROOT, 'images/build');
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

interface Image {
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
}

function loadImage(name: string): Image {
  const dir = join(BUILD, name);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as ImageManifest;
  return { manifest, artifacts: Object.fromEntries(manifest.artifacts.map((a) => [a.role, join(dir, a.file)])) };
}

let unikernel: Image;
let linux: Image;
const running: QemuProcess[] = [];
let runRoot: string;
let runDirs = 0;

beforeAll(() => {
  // Skips the images whose sources did not change since the last build.
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-images.mjs')], { stdio: 'pipe' });
  unikernel = loadImage('unikernel-ticker');
  linux = loadImage('linux-service');
  runRoot = tempDir('edge-agent-qemu-');
}, 300_000);

afterEach(async () => {
  await Promise.all(running.splice(0).map((vm) => vm.quit(2000)));
});

afterAll(() => {
  // Every QEMU these tests started is gone, whatever failed.
  expect(qemuProcessesUnder(runRoot)).toEqual([]);
  rmSync(runRoot, { recursive: true, force: true });
});

async function start(image: Image, extra: Partial<QemuProcessOptions> = {}): Promise<QemuProcess> {
  const vm = await QemuProcess.start(options(image, extra), log);
  running.push(vm);
  return vm;
}

function options(image: Image, extra: Partial<QemuProcessOptions> = {}): QemuProcessOptions {
  return { id: image.manifest.name, runDir: join(runRoot, `run${runDirs++}`), pidDir: join(runRoot, 'pids'), consoleMaxBytes: 1024 ** 2, accel: 'tcg', ...image, ...extra };
}

/** PIDs of live QEMU processes with `dir` on their command line. */
function qemuProcessesUnder(dir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmdline.startsWith('qemu-system') && cmdline.includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

const TICK = /unikernel boot=([0-9a-f]+) tick=(\d+)/g;

/** The unikernel's boot id and its latest tick, from its console. */
function lastTick(vm: QemuProcess): { boot: string; tick: number } | undefined {
  const ticks = [...vm.consoleTail(2000).matchAll(TICK)];
  const last = ticks.at(-1);
  return last && { boot: last[1]!, tick: Number(last[2]) };
}

function waitTick(vm: QemuProcess, atLeast: number, timeoutMs = 10_000) {
  return waitFor(`tick ${atLeast} on ${vm.consolePath}`, () => {
    const last = lastTick(vm);
    return last && last.tick >= atLeast && last;
  }, { timeoutMs, intervalMs: 50 });
}

async function waitStatus(vm: QemuProcess, status: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(`status ${status}`, async () => (await vm.status()) === status, { timeoutMs, intervalMs: 20 });
}

async function httpGet(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
  return `${response.status} ${await response.text()}`;
}

/** The arguments without what belongs to one side only: its run directory and `-incoming`. */
function deviceArgs(options: QemuOptions): string[] {
  const args = qemuArgs(options).map((arg) => arg.replaceAll(options.runDir, '<run>'));
  const incoming = args.indexOf('-incoming');
  if (incoming >= 0) args.splice(incoming, 2);
  return args;
}

describe('accelerator', () => {
  it('falls back to TCG when KVM does not really run guests, within a few seconds, once per process', async () => {
    const started = performance.now();
    // This machine's /dev/kvm opens and query-kvm says enabled, but guests crawl: the probe must see through it.
    expect(await detectAccel(log, 'x86_64')).toBe('tcg');
    expect(performance.now() - started).toBeLessThan(5000);
    const again = performance.now();
    expect(await detectAccel(log, 'x86_64')).toBe('tcg');
    expect(performance.now() - again).toBeLessThan(5);
  });

  it('passes the probe where the accelerator works (TCG), so the fallback above is about KVM', async () => {
    await probeAccel('tcg', 'x86_64');
  });
});

describe('QEMU process', () => {
  it('boots the unikernel, captures its console, pauses, resumes and quits', async () => {
    const started = performance.now();
    const vm = await start(unikernel);
    expect(await vm.status()).toBe('running');
    await waitFor('the boot line', () => vm.consoleTail().includes(' started'), { intervalMs: 10 });
    log.info({ bootMs: Math.round(performance.now() - started) }, 'unikernel booted');
    const first = await waitTick(vm, 1);
    expect(vm.consoleTail()).toContain(`unikernel boot=${first.boot} started`);

    await vm.pause();
    expect(await vm.status()).toBe('paused');
    const paused = lastTick(vm)!;
    await sleep(1300);
    expect(lastTick(vm)).toEqual(paused);
    await vm.resume();
    expect(await vm.status()).toBe('running');
    await waitTick(vm, paused.tick + 1);

    const pid = vm.pid;
    await vm.quit();
    expect(await vm.exited).toEqual({ code: 0, signal: null });
    expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    expect(existsSync(vm.consolePath.replace(/\.console$/, '.qmp'))).toBe(false);
  });

  it('answers QMP commands in order and turns error answers into QmpError', async () => {
    const vm = await start(unikernel);
    const answers = await Promise.all([vm.status(), vm.qmp.execute('query-name'), vm.status()]);
    expect(answers).toEqual(['running', { name: 'unikernel-ticker' }, 'running']);
    const error = await vm.qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpError);
    expect(error).toMatchObject({ command: 'no-such-command', errorClass: 'CommandNotFound' });
    expect(await vm.status()).toBe('running');
  });

  it('applies memory and CPU caps, visible through QMP and the cgroup', async () => {
    const vm = await start(unikernel, { memoryMiB: 48, cpus: 2, cpuQuotaPercent: 30 });
    expect(await vm.qmp.execute('query-memory-size-summary')).toMatchObject({ 'base-memory': 48 * 1024 * 1024 });
    expect(await vm.qmp.execute('query-cpus-fast')).toHaveLength(2);
    const cgroupLine = readFileSync(`/proc/${vm.pid}/cgroup`, 'utf8').split('\n').find((line) => line.includes('edge-agent/'))!;
    const cgroup = cgroupLine.split(':')[2]!;
    const v2 = cgroupLine.startsWith('0::');
    const dir = v2 ? join('/sys/fs/cgroup', cgroup) : join('/sys/fs/cgroup/cpu', cgroup);
    expect(readFileSync(join(dir, v2 ? 'cpu.max' : 'cpu.cfs_quota_us'), 'utf8').trim()).toBe(v2 ? '30000 100000' : '30000');
    await waitTick(vm, 1);
    await vm.quit();
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses bad options and missing artifacts before anything runs', async () => {
    const dir = join(runRoot, 'refused');
    await expect(QemuProcess.start(options(unikernel, { runDir: dir, artifacts: { kernel: '/nonexistent/unikernel.elf' } }), log)).rejects.toThrow(
      'cannot run unikernel-ticker (unikernel-ticker): kernel /nonexistent/unikernel.elf: no such file',
    );
    await expect(QemuProcess.start(options(unikernel, { runDir: dir, cpus: 0 }), log)).rejects.toThrow('cpus must be a positive integer, not 0');
    await expect(QemuProcess.start(options(unikernel, { runDir: dir, hostPorts: [{ guest: 80, host: 8080 }] }), log)).rejects.toThrow(
      'a unikernel image has no network device to forward host ports to',
    );
    await expect(QemuProcess.start(options(linux, { runDir: dir, artifacts: { kernel: linux.artifacts.kernel } }), log)).rejects.toThrow(
      'a linux image needs an initrd or a disk artifact',
    );
    expect(existsSync(dir)).toBe(false);
  });

  it("runs an aarch64 image on the virt machine its manifest names, with the host's CPU and interrupt controller under KVM", () => {
    const manifest: ImageManifest = { ...linux.manifest, architecture: 'aarch64', aarch64: { machine: 'virt', cpu: 'host', accel: 'kvm', notes: '' } };
    const args = qemuArgs(options({ manifest, artifacts: linux.artifacts }, { accel: 'kvm' }));
    expect(args.join(' ')).toContain('-accel kvm -machine virt,gic-version=host -cpu host -m 128 -smp 1');
    expect(args.join(' ')).toContain('-device virtio-net-pci,netdev=n0');
    expect(qemuArgs(options({ manifest, artifacts: linux.artifacts }, { accel: 'tcg' })).join(' ')).toContain('-accel tcg -machine virt -cpu max');
  });

  it('says why when QEMU itself refuses to start, its exit and its words, however busy the host, and leaves no process behind', async () => {
    const garbage = join(runRoot, 'not-a-kernel.bin');
    writeFileSync(garbage, Buffer.alloc(4096, 0x5a));
    // Several at once make the host busy: QMP may see the socket close before QEMU's exit is reaped.
    const dirs = Array.from({ length: 6 }, (_, i) => join(runRoot, `garbage-${i}`));
    const errors = await Promise.all(dirs.map((dir) => QemuProcess.start(options(unikernel, { runDir: dir, artifacts: { kernel: garbage } }), log).catch((e: Error) => e)));
    for (const error of errors) {
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toBe('QEMU for unikernel-ticker (unikernel-ticker) did not start: QEMU exited (code 1)\nqemu: invalid kernel header');
    }
    for (const dir of dirs) {
      expect(qemuProcessesUnder(dir)).toEqual([]);
      expect(existsSync(join(dir, 'unikernel-ticker.qmp'))).toBe(false);
    }
  });
});

describe('live migration', () => {
  it('moves the running unikernel to another QEMU over loopback TCP: same boot, ticks go on', async () => {
    const source = await start(unikernel);
    const before = await waitTick(source, 1);
    const targetOptions = options(unikernel, { incoming: 'defer' });
    expect(deviceArgs(targetOptions)).toEqual(deviceArgs(options(unikernel)));
    const target = await start(unikernel, targetOptions);
    expect(await target.status()).toBe('inmigrate');

    const port = await freePort();
    await target.migrateIncoming(`tcp:127.0.0.1:${port}`);
    const started = performance.now();
    await source.migrateOut(`tcp:127.0.0.1:${port}`);
    const progress: string[] = [];
    const info = await source.awaitMigration(20_000, (i) => progress.push(i.status));
    log.info({ ...info, wallMs: Math.round(performance.now() - started) }, 'unikernel migrated');
    expect(info).toMatchObject({ status: 'completed', downtimeMs: expect.any(Number), totalTimeMs: expect.any(Number) });
    expect(info.transferredBytes).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe('completed');
    expect(await source.status()).toBe('postmigrate');
    await waitStatus(target, 'running');

    const after = await waitTick(target, before.tick + 1);
    expect(after.boot).toBe(before.boot);
    // The target's console starts where the migration left off: no second boot.
    expect(target.consoleTail()).not.toContain('started');
  });

  it('moves the Linux service VM live and through a snapshot, with its port forward: HTTP answers after each', async () => {
    const [sourcePort, targetPort, restoredPort] = [await freePort(), await freePort(), await freePort()];
    const booted = performance.now();
    const source = await start(linux, { hostPorts: [{ guest: 8080, host: sourcePort }] });
    await waitFor('linux-service ready', () => source.consoleTail().includes('linux-service ready'), { timeoutMs: 30_000, intervalMs: 50 });
    log.info({ bootToReadyMs: Math.round(performance.now() - booted) }, 'linux booted');
    const page = await httpGet(sourcePort);
    expect(page).toMatch(/^200 /);

    const target = await start(linux, { incoming: 'defer', hostPorts: [{ guest: 8080, host: targetPort }] });
    const socket = join(runRoot, 'linux-migration.sock');
    await target.migrateIncoming(`unix:${socket}`);
    await source.migrateOut(`unix:${socket}`);
    const info = await source.awaitMigration(30_000);
    log.info(info, 'linux migrated');
    expect(info.status).toBe('completed');
    await waitStatus(target, 'running');
    await source.quit();
    expect(await httpGet(targetPort)).toBe(page);

    const file = join(runRoot, 'linux.snapshot');
    const saved = await target.snapshot(file);
    expect(saved.status).toBe('completed');
    await target.quit();
    const resuming = performance.now();
    await start(linux, { snapshot: file, hostPorts: [{ guest: 8080, host: restoredPort }] });
    const restoreMs = performance.now() - resuming;
    expect(await httpGet(restoredPort)).toBe(page);
    log.info({ saveMs: saved.totalTimeMs, restoreMs: Math.round(restoreMs), firstPageMs: Math.round(performance.now() - resuming), bytes: readFileSync(file).length }, 'linux snapshot');
  });

  it('leaves the source running when the target dies midway', async () => {
    const source = await start(unikernel);
    await waitTick(source, 1);
    const target = await start(unikernel, { incoming: 'defer' });
    const port = await freePort();
    await target.migrateIncoming(`tcp:127.0.0.1:${port}`);
    // Slow enough that the migration is still going when the target goes.
    await source.capMigrationBandwidth(256 * 1024);
    await source.migrateOut(`tcp:127.0.0.1:${port}`);
    await waitFor('data on the way', async () => ((await source.queryMigrate()).transferredBytes ?? 0) > 0, { intervalMs: 20 });
    process.kill(target.pid, 'SIGKILL');
    expect(await target.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const info = await source.awaitMigration(20_000);
    expect(info.status).toBe('failed');
    expect(info.error).toBeTruthy();
    expect(await source.status()).toBe('running');
    const last = lastTick(source)!;
    await waitTick(source, last.tick + 1);
  });
});

describe('snapshots', () => {
  it('saves the unikernel to a file and starts it again from there: same boot, ticks go on', async () => {
    const vm = await start(unikernel);
    const before = await waitTick(vm, 1);
    const file = join(runRoot, 'unikernel.snapshot');
    const saving = performance.now();
    const info = await vm.snapshot(file);
    const saveMs = performance.now() - saving;
    expect(info.status).toBe('completed');
    expect(await vm.status()).toBe('postmigrate');
    await vm.quit();

    const resuming = performance.now();
    const restored = await start(unikernel, { snapshot: file });
    const restoreMs = performance.now() - resuming;
    expect(await restored.status()).toBe('running');
    const after = await waitTick(restored, before.tick + 1);
    expect(after.boot).toBe(before.boot);
    log.info({ saveMs: Math.round(saveMs), restoreMs: Math.round(restoreMs), bytes: readFileSync(file).length }, 'unikernel snapshot');
  });

  it('refuses a missing snapshot file, and a file that is not one, without leaving QEMU behind', async () => {
    const dir = join(runRoot, 'bad-snapshot');
    await expect(QemuProcess.start(options(unikernel, { runDir: dir, snapshot: join(runRoot, 'missing.snapshot') }), log)).rejects.toThrow(/snapshot .*missing\.snapshot: no such file/);
    const junk = join(runRoot, 'junk.snapshot');
    writeFileSync(junk, 'not a migration stream');
    await expect(QemuProcess.start(options(unikernel, { runDir: dir, snapshot: junk }), log)).rejects.toThrow(/did not start/);
    expect(qemuProcessesUnder(dir)).toEqual([]);
  });
});
