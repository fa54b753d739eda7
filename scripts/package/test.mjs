#!/usr/bin/env node
// `npm run test:package`: builds the arm64 and armhf packages and proves each on an emulated
// Debian bookworm root with neither a compiler nor nodejs (install-run.mjs). Minutes, not
// seconds, so not part of `npm test`; run it before every release.
import { log, PackageError } from './common.mjs';
import { buildPackages } from './build.mjs';
import { installAndRun } from './install-run.mjs';
import { TARGETS } from './targets.mjs';

const ARCHES = ['arm64', 'armhf'];

try {
  for (const { arch, deb } of buildPackages(ARCHES)) {
    const figures = await installAndRun(arch, TARGETS[arch], deb);
    log(`${arch}: passed ${JSON.stringify(figures)}`);
  }
} catch (error) {
  if (!(error instanceof PackageError)) throw error;
  console.error(`test:package: ${error.message}`);
  process.exitCode = 1;
}
