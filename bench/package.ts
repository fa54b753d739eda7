/**
 * package: what a gateway gets from `npm run package`. The size of each architecture's .deb and
 * of its installed tree; then, in the same run, each of arm64 (emulated with qemu-user) and amd64
 * installed with `dpkg -i` into a fresh bookworm root and started with the demo profiles: install
 * time, time to "agent ready", and resident memory. Emulated figures are the emulator's: arm64's
 * ready time and RSS (about 2.5× native) say the package works, not how fast a Pi is; compare
 * arm64 with amd64 by ratio within the run.
 */
import { statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { report, round } from './lib/report.js';

interface Built {
  arch: string;
  deb: string;
}
interface Figures {
  installMs: number;
  readyMs: number;
  rssMiB: number;
}
/** The packaging scripts are plain ESM (scripts/package/*.mjs), run by npm without a build: imported by URL, typed here. */
interface Packaging {
  build: { buildPackages(arches: string[]): Built[] };
  install: { installAndRun(arch: string, target: unknown, deb: string, say: (line: string) => void): Promise<Figures> };
  targets: { TARGETS: Record<string, unknown> };
}

const SCRIPTS = new URL('../../scripts/package/', import.meta.url);
const RUN_ON = ['arm64', 'amd64'];

async function packaging(): Promise<Packaging> {
  const load = (name: string) => import(new URL(name, SCRIPTS).href);
  return { build: await load('build.mjs'), install: await load('install-run.mjs'), targets: await load('targets.mjs') };
}

const mib = (bytes: number) => round(bytes / 2 ** 20);

export async function packageBench(): Promise<void> {
  const { build, install, targets } = await packaging();
  const figures: Record<string, number> = {};
  const built = build.buildPackages(['amd64', 'arm64', 'armhf']);
  for (const { arch, deb } of built) {
    figures[`${arch}DebMiB`] = mib(statSync(deb).size);
    // Installed-Size is in KiB, as dpkg computed it from the tree.
    figures[`${arch}InstalledMiB`] = round(Number(execFileSync('dpkg-deb', ['-f', deb, 'Installed-Size'], { encoding: 'utf8' })) / 1024);
  }
  for (const arch of RUN_ON) {
    const deb = built.find((b) => b.arch === arch)!.deb;
    const run = await install.installAndRun(arch, targets.TARGETS[arch], deb, (line) => console.error(line));
    figures[`${arch}InstallMs`] = run.installMs;
    figures[`${arch}ReadyMs`] = run.readyMs;
    figures[`${arch}RssMiB`] = run.rssMiB;
  }
  figures.arm64EmulatedReadyRatio = round(figures.arm64ReadyMs! / figures.amd64ReadyMs!);
  report('package', figures);
}
