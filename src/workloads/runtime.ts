/**
 * The runtime contract: what the manager, migrations and on-demand starts need from whatever runs
 * a workload's guest (QEMU today, qemu/). A guest's whole state travels as one stream: out to a
 * peer, in from one, or into a snapshot file it starts from later.
 */
import type { ArtifactPaths, GuestNetwork, ImageManifest } from './types.js';

/** What a guest is started from: its image and the caps its definition sets. */
export interface GuestSpec {
  /** The workload's name: it names the guest's files and log lines. */
  name: string;
  manifest: ImageManifest;
  artifacts: ArtifactPaths;
  /** Guest RAM and vCPUs; the manifest's by default. */
  memoryMiB?: number;
  cpus?: number;
  /** CPU time the whole guest may use, 100 = one host core. */
  cpuQuotaPercent?: number;
  /** Guest ports published on 127.0.0.1. */
  hostPorts: Array<{ guest: number; host: number }>;
  /** What the guest's network reaches besides its published ports: nothing (`restricted`), or the host and the LAN. */
  network: GuestNetwork;
}

/**
 * Mutual TLS on a migration stream with pinned certificates: this agent's own identity, and the
 * peer's certificate, the only one the other end may present (it is the whole trust store).
 */
export interface StreamTls {
  certPem: string;
  keyPem: string;
  peerCertPem: string;
}

/** Where a guest waiting for a migration stream listens: a host address of this agent's, and the stream's TLS. */
export interface StreamListen {
  host: string;
  tls: StreamTls;
}

/** Where an outgoing migration stream goes: the target's address and port, and who must answer there. */
export interface StreamTarget {
  host: string;
  port: number;
  tls: StreamTls;
  /** The name in the peer's certificate, which TLS checks the target's certificate against besides the pin. */
  peerName: string;
  /** Open the stream as MPTCP, so that the kernel pools it over the trusted WiFi identities. */
  mptcp: boolean;
}

/** A guest waiting for a migration stream, and the port it took for it. */
export interface IncomingGuest {
  guest: Guest;
  port: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How far a stream of the guest's state (a migration, a snapshot) got. */
export interface MigrationInfo {
  /** `active`, `completed`, `failed`, `cancelled`, … */
  status: string;
  totalTimeMs?: number;
  downtimeMs?: number;
  setupTimeMs?: number;
  transferredBytes?: number;
  remainingBytes?: number;
  totalBytes?: number;
  error?: string;
}

export interface Runtime {
  /** Boots the guest, or starts it from a file `snapshot` wrote; resolves once it runs, and leaves nothing behind when it fails. */
  start(spec: GuestSpec, snapshot?: string): Promise<Guest>;
  /**
   * Starts the guest waiting for a migration stream instead of booting: the target of a migration.
   * It listens on `listen.host`, on a port of its own choosing, and takes only a stream whose
   * sender presents the pinned certificate; a connection that does not is dropped, and it waits on.
   */
  incoming(spec: GuestSpec, listen: StreamListen): Promise<IncomingGuest>;
  /**
   * Ends the guests a killed run of this agent left (they outlive it), so what ran starts again
   * under control instead of twice; resolves once they are gone. Never ends a guest it did not start.
   */
  reclaim(): Promise<void>;
  /** The end of what workload `name`'s guest wrote to its console, running or not; '' if it never had one. */
  consoleTail(name: string, bytes: number): string;
}

export interface Guest {
  readonly pid: number;
  /** How it runs (`kvm`, `tcg`): shown with the workload. */
  readonly accel: string;
  /** Resolves once its process is gone, however it ended. */
  readonly exited: Promise<Exit>;
  /** Its run state: `running`, `paused`, `postmigrate` (its state went elsewhere), … */
  status(): Promise<string>;
  /** Stops its vCPUs; memory and devices stay. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Ends it, forcibly after `timeoutMs`; resolves once it is gone. */
  quit(timeoutMs?: number): Promise<void>;
  /** Caps what an outgoing migration may take of the link. */
  capMigrationBandwidth(bytesPerSecond: number): Promise<void>;
  /** The pause an outgoing migration aims at: it copies while the guest runs until the rest fits in it. */
  limitMigrationDowntime(ms: number): Promise<void>;
  /** Starts sending its state to `target` over mutual TLS and returns; the guest runs on meanwhile. */
  migrateTo(target: StreamTarget): Promise<void>;
  /** Stops an outgoing migration under way; the guest runs on here. */
  cancelMigration(): Promise<void>;
  /** Until the outgoing migration completed, failed or was cancelled, saying which; rejects only if it still goes after `timeoutMs`. */
  awaitMigration(timeoutMs: number, onProgress?: (info: MigrationInfo) => void): Promise<MigrationInfo>;
  /** Writes its whole state to `file`, which `start` starts from later; the guest is left paused. */
  snapshot(file: string): Promise<MigrationInfo>;
}
