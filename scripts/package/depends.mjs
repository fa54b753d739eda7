// The lowest libc6 and libstdc++6 the package's binaries run on, read from the symbol versions
// they import (GLIBC_2.34, GLIBCXX_3.4.29): what dpkg-shlibdeps would find, without the target
// architecture's libraries installed on the build host.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { output } from './common.mjs';
import { elfMachine } from './elf.mjs';

/** GLIBCXX_3.4.N → the GCC release whose libstdc++ first has it (Debian's libstdc++6 follows GCC's version). */
const GCC_OF_GLIBCXX = { 21: 5, 22: 6, 23: 7, 24: 7, 25: 8, 26: 9, 27: 10, 28: 10, 29: 11, 30: 12 };

function elfFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return elfFiles(path);
    return entry.isFile() && elfMachine(path) !== undefined ? [path] : [];
  });
}

const newest = (versions) => versions.reduce((a, b) => (a.localeCompare(b, 'en', { numeric: true }) >= 0 ? a : b), '0');

/** `['libc6 (>= 2.34)', 'libstdc++6 (>= 11)']` for the binaries under `dir`. */
export function sharedLibraryDepends(dir, target) {
  const objdump = target.cross ? `${target.cross}-objdump` : 'objdump';
  const symbols = elfFiles(dir).map((file) => output(objdump, ['-T', file])).join('\n');
  const glibc = newest([...symbols.matchAll(/GLIBC_(\d+\.\d+(?:\.\d+)?)/g)].map((m) => m[1]));
  const glibcxx = Math.max(0, ...[...symbols.matchAll(/GLIBCXX_3\.4\.(\d+)/g)].map((m) => Number(m[1])));
  const gcc = GCC_OF_GLIBCXX[glibcxx];
  return [`libc6 (>= ${glibc})`, gcc ? `libstdc++6 (>= ${gcc})` : 'libstdc++6'];
}
