/** The `cloud` section: where CloudCore is and how the link behaves. */
import * as v from 'valibot';
import { positiveInteger as positiveMs } from '../schema.js';
import { DEFAULT_PROJECT_ID } from './message.js';
import { KUBEEDGE_VERSIONS, NEWEST_KUBEEDGE } from './versions.js';

const port = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535));

const queueSection = v.strictObject({
  /** Keep only the latest unsent value per twin property (and state per device) instead of every one. */
  coalesce: v.optional(v.boolean(), false),
  /** Disk quota of the unsent reports (their message bytes). */
  maxBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1024)), 256 * 1024 * 1024),
  /** When the quota is reached: drop the oldest unsent reports, or refuse the newest. */
  whenFull: v.optional(v.picklist(['drop-oldest', 'drop-newest']), 'drop-oldest'),
});

export const cloudSection = v.pipe(
  v.strictObject({
    enabled: v.optional(v.boolean(), false),
    /** CloudCore's address (host name or IP), as keadm join's --cloudcore-ipport without the port. */
    server: v.optional(v.pipe(v.string(), v.minLength(1))),
    httpsPort: v.optional(port, 10002),
    websocketPort: v.optional(port, 10000),
    projectId: v.optional(v.pipe(v.string(), v.minLength(1)), DEFAULT_PROJECT_ID),
    /** `keadm gettoken`: needed once, to obtain the edge certificate. */
    token: v.optional(v.string()),
    /**
     * The namespace in node resources (`<ns>/node/<node>`): CloudCore's registerNodeNamespace,
     * `default` up to KubeEdge 1.22, `null` from 1.23.
     */
    nodeNamespace: v.optional(v.pipe(v.string(), v.minLength(1)), 'default'),
    heartbeatMs: v.optional(positiveMs, 15_000),
    nodeStatusIntervalMs: v.optional(positiveMs, 10_000),
    /** The CloudCore release spoken to (`1.16` = 1.16.2+): which state fields and forms the cloud and `state/update/result` get (versions.ts). */
    kubeedgeVersion: v.optional(v.picklist(KUBEEDGE_VERSIONS), NEWEST_KUBEEDGE),
    /**
     * How long a report waits for the cloud's answer before it is sent again under the same id,
     * and again after each such wait (EdgeCore's devicetwin checkConfirm: 60 s). CloudCore answers
     * nothing when it cannot apply a report, so an unanswered one stops counting against `window`.
     */
    resendMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100)), 60_000),
    /** How many reports may await the cloud's answer at once. */
    window: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)), 256),
    queue: v.optional(queueSection, {}),
  }),
  v.check((c) => !c.enabled || c.server !== undefined, 'cloud.server is required when the cloud link is enabled'),
);

export type CloudConfig = v.InferOutput<typeof cloudSection>;
