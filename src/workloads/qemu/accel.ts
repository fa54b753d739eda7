/**
 * Which QEMU accelerator this host can use: KVM when it really runs guests, TCG otherwise.
 *
 * `/dev/kvm` being there, and even QEMU's `query-kvm` saying enabled, is not enough: on some hosts
 * (nested virtualization gone wrong) KVM runs a guest hundreds of times slower than TCG, so a
 * Linux kernel never gets past its decompressor. So the probe boots a tiny guest under KVM that
 * enters the CPU mode kernels run in, loops ten million times (tens of milliseconds under TCG,
 * a few under KVM) and powers the machine off; KVM counts only if that happens in time.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v from 'valibot';
import type { Logger } from '../../log.js';
import { parseWith } from '../../schema.js';
import { withTimeout } from '../../timeout.js';
import { QmpClient } from './qmp.js';
import type { Architecture } from '../types.js';

export type Accel = 'kvm' | 'tcg';

const PROBE_DEADLINE_MS = 3000;

interface ProbeGuest {
  machine: (accel: Accel) => string[];
  /** The guest's bytes, base64: a raw image QEMU's `-kernel` loads. */
  image: string;
}

const PROBE_GUESTS: Record<Architecture, ProbeGuest> = {
  /*
   * Multiboot (a.out kludge, loaded at 1 MiB), in GNU as:
   *   header: .long 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000), header, header, 0, 0, entry
   *   entry:  mov $0x1000,%edi; xor %eax,%eax; mov $0xC00,%ecx; rep stosl      # page tables at 0x1000-0x3fff
   *           movl $0x2003,0x1000; movl $0x3003,0x2000; movl $0x83,0x3000        # identity-map 2 MiB
   *           mov $0x1000,%eax; mov %eax,%cr3; mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4      # PAE
   *           mov $0xC0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr                 # EFER.LME
   *           mov %cr0,%eax; or $0x80000001,%eax; mov %eax,%cr0; lgdt gdtr; ljmp $0x08,$long
   *   long:   mov $10000000,%ecx; 1: addl %ecx,0x5000; dec %ecx; jnz 1b         # .code64
   *           mov $0x604,%dx; mov $0x2000,%ax; out %ax,%dx; 2: hlt; jmp 2b       # ACPI S5 (PIIX4 PM at 0x600)
   *   gdt:    .quad 0, 0x00AF9A000000FFFF;  gdtr: .word 15; .long gdt
   * gcc -c -m32, ld -m elf_i386 -Ttext=0x100000 --oformat binary.
   */
  x86_64: {
    machine: () => ['-machine', 'pc'],
    image:
      'ArCtGwAAAQD+T1HkAAAQAAAAEAAAAAAAAAAAACAAEAC/ABAAADHAuQAMAADzq8cFABAAAAMgAADHBQAgAAADMAAAxwUAMAAAgwAAALgAEAAADyLYDyDgg8ggDyLguYAAAMAPMg0AAQAADzAPIMANAQAAgA8iwA8BFbgAEADqhAAQAAgAuYCWmAABDCUAUAAA/8l19Wa6BAZmuAAgZu/06/2NtCYAAAAAAAAAAAAAAAD//wAAAJqvAA8AqAAQAA==',
  },
  /*
   * Raw image, entered at EL1:
   *   movz x1, #0x98, lsl #16; 1: subs x1, x1, #1; b.ne 1b          # ~10 million iterations
   *   movz x0, #0x0008; movk x0, #0x8400, lsl #16; hvc #0           # PSCI SYSTEM_OFF
   *   2: wfi; b 2b
   * aarch64-linux-gnu-as, objcopy -O binary.
   */
  aarch64: {
    machine: (accel) => ['-machine', 'virt,gic-version=max', '-cpu', accel === 'kvm' ? 'host' : 'max'],
    image: 'AROg0iEEAPHh//9UAAGA0gCAsPICAADUfyAD1f///xc=',
  },
};

export function qemuBinary(architecture: Architecture): string {
  return architecture === 'x86_64' ? 'qemu-system-x86_64' : 'qemu-system-aarch64';
}

const detected = new Map<Architecture, Promise<Accel>>();

/** KVM if it works here, else TCG, with the reason logged; probed once per process and architecture. */
export function detectAccel(log: Logger, architecture: Architecture): Promise<Accel> {
  let accel = detected.get(architecture);
  if (!accel) {
    accel = chooseAccel(log, architecture);
    detected.set(architecture, accel);
  }
  return accel;
}

async function chooseAccel(log: Logger, architecture: Architecture): Promise<Accel> {
  const started = performance.now();
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    await probeAccel('kvm', architecture);
    log.info({ architecture, probeMs: Math.round(performance.now() - started) }, 'KVM works: workloads run under KVM');
    return 'kvm';
  } catch (error) {
    log.warn({ architecture, reason: (error as Error).message, probeMs: Math.round(performance.now() - started) }, 'KVM unusable: workloads run under TCG (emulation)');
    return 'tcg';
  }
}

const QueryKvmSchema = v.object({ enabled: v.boolean(), present: v.boolean() });
const ShutdownEventSchema = v.object({ guest: v.boolean(), reason: v.string() });

/** Resolves if the probe guest powers itself off under `accel` within the deadline; else rejects saying what went wrong. */
export async function probeAccel(accel: Accel, architecture: Architecture, deadlineMs = PROBE_DEADLINE_MS): Promise<void> {
  const guest = PROBE_GUESTS[architecture];
  const dir = await mkdtemp(join(tmpdir(), 'edge-agent-accel-'));
  const image = join(dir, 'probe.bin');
  const socketPath = join(dir, 'qmp');
  await writeFile(image, Buffer.from(guest.image, 'base64'));
  const args = ['-accel', accel, ...guest.machine(accel), '-m', '32', '-S', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'];
  args.push('-kernel', image, '-qmp', `unix:${socketPath},server=on,wait=off`);
  const child = spawn(qemuBinary(architecture), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-1000)));
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const exitedEarly = new Promise<never>((_, reject) => {
    child.once('error', (error) => reject(new Error(`cannot run ${qemuBinary(architecture)}: ${error.message}`)));
    child.once('exit', (code, signal) => reject(new Error(`QEMU exited (${signal ?? code}) before the probe finished: ${stderr.trim()}`)));
  });
  exitedEarly.catch(() => undefined);
  const abort = new AbortController();
  let qmp: QmpClient | undefined;
  const run = async () => {
    qmp = await Promise.race([QmpClient.connect(socketPath, deadlineMs, abort.signal), exitedEarly]);
    if (accel === 'kvm') {
      const kvm = await qmp.query('query-kvm', QueryKvmSchema);
      if (!kvm.enabled || !kvm.present) throw new Error(`QEMU has no KVM (query-kvm: ${JSON.stringify(kvm)})`);
    }
    let shutdown: v.InferOutput<typeof ShutdownEventSchema> | undefined;
    qmp.on('event', (name, data) => {
      if (name !== 'SHUTDOWN') return;
      const parsed = parseWith(ShutdownEventSchema, data);
      shutdown = parsed.ok ? parsed.value : { guest: false, reason: `unreadable SHUTDOWN event ${JSON.stringify(data)}` };
    });
    // QMP closes once QEMU is gone, after every event it sent before.
    const closed = new Promise<void>((resolve) => qmp!.once('close', resolve));
    await qmp.execute('cont');
    await closed;
    if (shutdown?.reason !== 'guest-shutdown') throw new Error(`the probe guest did not power off (${shutdown ? `QEMU stopped: ${shutdown.reason}` : `QEMU exited: ${stderr.trim()}`})`);
  };
  try {
    await withTimeout(run(), deadlineMs, () => new Error(`the probe guest did not power off within ${deadlineMs} ms under ${accel}`));
  } finally {
    abort.abort();
    qmp?.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
    await rm(dir, { recursive: true, force: true });
  }
}
