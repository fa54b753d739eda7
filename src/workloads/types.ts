/** What the workloads code shares about images: a manifest as it describes an image, and the image's artifacts on this host. */
import * as v from 'valibot';

export type Architecture = 'x86_64' | 'aarch64';
export type ArtifactRole = 'kernel' | 'initrd' | 'disk';

export interface ImageArtifact {
  role: ArtifactRole;
  /** File name, relative to the manifest. */
  file: string;
  /** Lower-case hex SHA-256 of the file's bytes. */
  sha256: string;
  size: number;
}

export interface ImagePort {
  name: string;
  /** The port the guest serves on. */
  guest: number;
  protocol: 'tcp';
}

export interface ImageManifest {
  name: string;
  version: string;
  /** `qemu` is the only runtime; anything else is refused with the reason. */
  runtime: 'qemu';
  /** `unikernel` boots a multiboot kernel; `linux` a Linux kernel with an initrd or disk. */
  kind: 'unikernel' | 'linux';
  architecture: Architecture;
  artifacts: ImageArtifact[];
  memoryMiB: number;
  cpus: number;
  /** Kernel command line (linux). */
  cmdline?: string;
  ports: ImagePort[];
  /** How an aarch64 gateway (Raspberry Pi 4/5 with KVM) runs the same workload: machine, cpu, and which artifacts it needs instead. */
  aarch64?: { machine: string; cpu: string; accel: 'kvm' | 'tcg'; notes: string };
  /** `lan`: the image asks for a network reaching the host and the LAN (granted only if its workload's config allows it too). */
  network: GuestNetwork;
}

/** A guest's user networking: `restricted` reaches nothing but what is published to it, `lan` the host and the LAN too. */
/** What a guest gets: the memory and CPUs its definition asks for, else its image's. */
export function guestSize(asked: { memoryMiB?: number; cpus?: number }, manifest: Pick<ImageManifest, 'memoryMiB' | 'cpus'>): { memoryMiB: number; cpus: number } {
  return { memoryMiB: asked.memoryMiB ?? manifest.memoryMiB, cpus: asked.cpus ?? manifest.cpus };
}

export const guestNetwork = v.optional(v.picklist(['restricted', 'lan']), 'restricted');
export type GuestNetwork = v.InferOutput<typeof guestNetwork>;

/** An image's artifacts on this host, by role, after their digests were checked. */
export type ArtifactPaths = Partial<Record<ArtifactRole, string>>;
