/** The `workloads` section: images, workloads to run, peers that may exchange them, offload policy. */
import { availableParallelism, totalmem } from 'node:os';
import * as v from 'valibot';
import { portNumber as port, positiveInteger } from '../schema.js';
import { guestNetwork } from './types.js';

const name = v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be lower-case letters, digits and dashes'));
const percent = v.pipe(v.number(), v.minValue(0), v.maxValue(100));

const peer = v.strictObject({
  name,
  /** `https://host:port` of the peer's workload endpoint. */
  url: v.pipe(v.string(), v.url(), v.startsWith('https://', 'must be an https:// URL')),
  /** SHA-256 of the peer's certificate (`edge-agent workloads identity` on the peer), hex, colons allowed. */
  fingerprint: v.pipe(
    v.string(),
    v.transform((s) => s.replaceAll(':', '').toLowerCase()),
    v.regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 fingerprint (64 hex digits)'),
  ),
  /** Trusted peers may receive workloads restricted to trusted targets. */
  trusted: v.optional(v.boolean(), false),
});

export const workloadDefinition = v.strictObject({
  name,
  /** The image's name, as in its manifest. */
  image: v.pipe(v.string(), v.minLength(1)),
  memoryMiB: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  cpus: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  cpuQuotaPercent: v.optional(v.pipe(v.number(), v.minValue(1))),
  /** Started with the agent. */
  autostart: v.optional(v.boolean(), false),
  restart: v.optional(v.picklist(['no', 'on-failure', 'always']), 'on-failure'),
  /** Where the offload policy may move it: nowhere, to trusted peers only, or to any peer. */
  placement: v.optional(v.picklist(['local', 'trusted', 'any']), 'any'),
  /** Guest ports published on 127.0.0.1: `{guest: 8080, host: 18080}`. */
  ports: v.optional(v.array(v.strictObject({ guest: port, host: port })), []),
  /**
   * `lan` lets the guest reach the host and the LAN, if its image asks for it too (`network: lan`
   * in its manifest); otherwise its user networking is restricted: published ports only.
   */
  network: guestNetwork,
  /** Started by the first connection to the host port of its first published port (Jitsu), stopped when idle. */
  onDemand: v.optional(v.strictObject({ idleTimeoutMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100)), 60_000), snapshot: v.optional(v.boolean(), true) })),
});

/** Thresholds with a margin: leave when crossing `out`, come back only past `back`. */
const policy = v.strictObject({
  enabled: v.optional(v.boolean(), false),
  /** The peer workloads go to and come back from (the meta-edge). */
  target: v.optional(name),
  intervalMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100)), 5000),
  /** How long a condition must hold before the policy acts on it. */
  holdMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 15_000),
  /** A rule set to null is not looked at. */
  cpuLoad: v.optional(v.nullable(v.strictObject({ out: percent, back: percent })), { out: 90, back: 60 }),
  freeMemoryMiB: v.optional(v.nullable(v.strictObject({ out: v.number(), back: v.number() })), { out: 64, back: 128 }),
  battery: v.optional(v.nullable(v.strictObject({ out: percent, back: percent })), { out: 20, back: 40 }),
  temperature: v.optional(v.nullable(v.strictObject({ out: v.number(), back: v.number() })), { out: 80, back: 70 }),
  /** Link quality 0–100 (WiFi); below `out` workloads stay where they are, as moving them would be slow. */
  linkQuality: v.optional(v.strictObject({ min: percent }), { min: 30 }),
  /** Device modes (set through the API) in which workloads leave: a robot on a mission needs its CPU and battery. */
  offloadModes: v.optional(v.array(v.string()), ['mission']),
});

export const workloadsSection = v.pipe(
  v.strictObject({
    enabled: v.optional(v.boolean(), false),
    /** Directories of built images (each `<name>/manifest.json`). */
    images: v.optional(v.array(v.string()), ['./images/build']),
    listen: v.optional(
      v.strictObject({
        host: v.optional(v.string(), '0.0.0.0'),
        port: v.optional(port, 9443),
        /** TLS handshakes each remote address may start: `burst` at once, then `perSecond`; more are cut before the handshake. */
        handshakes: v.optional(v.strictObject({ burst: v.optional(positiveInteger, 20), perSecond: v.optional(v.pipe(v.number(), v.minValue(0.01)), 5) }), {}),
        /** Refused connections are logged once per this many ms per remote address, with how many there were. */
        refusalLogIntervalMs: v.optional(positiveInteger, 60_000),
      }),
      {},
    ),
    peers: v.optional(v.array(peer), []),
    /** The largest artifact a peer's image may have; a download is cut off the moment it passes its declared size. */
    maxArtifactBytes: v.optional(positiveInteger, 1024 ** 3),
    /** How long fetching an offer's artifacts from a peer may take in all (besides the 30 s a peer may stay silent). */
    transferTimeoutMs: v.optional(positiveInteger, 600_000),
    /** Memory the workloads peers send here may have together, MiB; an offer beyond is refused (422). Unset: half the host's memory. */
    peerMemoryMiB: v.optional(positiveInteger, () => Math.floor(totalmem() / 2 / 1024 ** 2)),
    /** CPUs one workload a peer sends here may have. Unset: the host's. */
    peerCpus: v.optional(positiveInteger, () => availableParallelism()),
    /** Caps what a live migration may take of the link (QEMU's own default is 32 MiB/s). */
    migrationBandwidthMiBps: v.optional(v.pipe(v.number(), v.minValue(0.01))),
    /**
     * The pause a live migration aims at: QEMU copies while the guest runs until what is left fits
     * in it. Below QEMU's 300 ms default because it judges what fits by the capped copy rate, while
     * the final copy runs at the TLS stream's own pace, which on a small gateway is a few hundred MB/s.
     * Unset: DEFAULT_DOWNTIME_LIMIT_MS (migrate-out.ts).
     */
    migrationDowntimeLimitMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    /** How long a live migration's stream may take before it is cancelled and the workload runs on here: a 128 MiB guest over a few Mbit/s of WiFi needs minutes. */
    migrationTimeoutMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1000)), 120_000),
    workloads: v.optional(v.array(workloadDefinition), []),
    /** Each workload's serial console file is cut back to its newest half when it would pass this (the run dir is RAM on most gateways). */
    consoleMaxBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(256)), 1024 ** 2),
    /** Events kept per workload in its history; older ones go as new ones come. */
    historySize: v.optional(positiveInteger, 200),
    policy: v.optional(policy, {}),
  }),
  v.check((w) => new Set(w.workloads.map((d) => d.name)).size === w.workloads.length, 'workload names must be unique'),
  v.check((w) => !w.policy.enabled || w.peers.some((p) => p.name === w.policy.target), 'policy.target must name one of the peers'),
);

export type WorkloadsConfig = v.InferOutput<typeof workloadsSection>;
export type WorkloadDefinition = WorkloadsConfig['workloads'][number];
export type PolicyConfig = WorkloadsConfig['policy'];
