/** The `dmi` section: KubeEdge's Device Management Interface, where mapper-framework mappers attach. */
import * as v from 'valibot';
import { positiveInteger } from '../schema.js';

export const dmiSection = v.strictObject({
  enabled: v.optional(v.boolean(), true),
  /** The unix socket mappers dial (their `common.edgecore_sock`): `/etc/kubeedge/dmi.sock` as root, as EdgeCore's; `<runDir>/dmi.sock` otherwise. */
  socket: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** How long a call to a mapper may take (EdgeCore's DMI client: 10 s). */
  callTimeoutMs: v.optional(positiveInteger, 10_000),
  /** How often the agent checks that each registered mapper still listens; one that does not has its devices offline. */
  probeIntervalMs: v.optional(positiveInteger, 5_000),
  /** Calls mappers may make per second, all together, beyond a burst of as many (a runaway mapper cannot flood the twin). */
  maxCallsPerSecond: v.optional(positiveInteger, 1_000),
  /** The largest message a mapper may send. */
  maxMessageBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1024)), 1024 * 1024),
});

export type DmiConfig = v.InferOutput<typeof dmiSection>;
