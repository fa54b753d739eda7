#!/usr/bin/env node
// `npm run package [-- --arch amd64|arm64|armhf]`: self-contained Debian packages and tarballs
// in release/ (all three architectures without --arch). Downloads and builds are cached in
// .package-cache/, so a second run only lays out the tree and compresses it.
import { parseArgs } from 'node:util';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CACHE, log, PackageError } from './common.mjs';
import { lint, writeDeb, writeTarball } from './deb.mjs';
import { productionModules } from './modules.mjs';
import { nodeRuntime } from './node-runtime.mjs';
import { ARCHES, TARGETS } from './targets.mjs';
import { buildJavaScript, layTree } from './tree.mjs';

/** Earlier builds of this architecture's modules (another lock file, another script): the cache keeps the current one only. */
function dropStaleModules(arch, current) {
  const dir = `${CACHE}/modules`;
  for (const entry of readdirSync(dir)) {
    if (entry.startsWith(`${arch}-`) && join(dir, entry) !== current) rmSync(join(dir, entry), { recursive: true, force: true });
  }
}

/** Builds the packages of `arches`; resolves with, per architecture, the files and what was left out. */
export function buildPackages(arches) {
  const build = buildJavaScript();
  const results = [];
  for (const arch of arches) {
    const target = TARGETS[arch];
    const nodeDir = nodeRuntime(target);
    const modules = productionModules(arch, target, nodeDir);
    dropStaleModules(arch, modules.dir);
    const root = layTree({ root: `${CACHE}/stage/${arch}`, build, modules: modules.dir, nodeDir, target });
    const deb = writeDeb(root, arch, target);
    const tarball = writeTarball(root, arch);
    const lintian = lint(deb);
    for (const note of modules.notes) log(`${arch}: ${note}`);
    log(`${arch}: ${deb} (${(statSync(deb).size / 2 ** 20).toFixed(1)} MiB), ${tarball}`);
    results.push({ arch, deb, tarball, notes: modules.notes, lintian });
  }
  return results;
}

export function parseArches(argv) {
  const { values } = parseArgs({ args: argv, options: { arch: { type: 'string', multiple: true } }, allowPositionals: false });
  const arches = values.arch ?? ARCHES;
  const unknown = arches.filter((arch) => !TARGETS[arch]);
  if (unknown.length) throw new PackageError(`unknown --arch ${unknown.join(', ')}; known: ${ARCHES.join(', ')}`);
  return arches;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    buildPackages(parseArches(process.argv.slice(2)));
  } catch (error) {
    if (!(error instanceof PackageError)) throw error;
    console.error(`package: ${error.message}`);
    process.exitCode = 1;
  }
}
