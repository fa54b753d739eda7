// Which machine an ELF file is for, read from its header: enough to keep another
// architecture's prebuilt binaries out of a package (Debian forbids them, and they are dead weight).
import { closeSync, openSync, readSync } from 'node:fs';

const MACHINES = { 3: 'x86', 40: 'ARM', 62: 'x86-64', 183: 'AArch64' };

/** The machine name (`AArch64`, `ARM`, `x86-64`, …), or undefined when `file` is no ELF file. */
export function elfMachine(file) {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    if (readSync(fd, header, 0, 20, 0) < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  } finally {
    closeSync(fd);
  }
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  return MACHINES[machine] ?? `machine ${machine}`;
}
