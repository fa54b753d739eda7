/** Schemas of the payloads devices and mappers publish on the KubeEdge `$hw/events/…` topics. */
import * as v from 'valibot';
import { parseWith, type SchemaIssue } from '../schema.js';

const timestamp = v.pipe(v.number(), v.integer());
const version = v.object({ cloud: timestamp, edge: timestamp });
const valueString = v.string('must be a string, as KubeEdge twin values are');
const twinValue = v.object({ value: v.optional(valueString), metadata: v.nullish(v.object({ timestamp: v.optional(timestamp) })) });

const msgTwin = v.object({
  expected: v.nullish(twinValue),
  actual: v.nullish(twinValue),
  optional: v.nullish(v.boolean()),
  metadata: v.nullish(v.object({ type: v.optional(v.string()) })),
  expected_version: v.nullish(version),
  actual_version: v.nullish(version),
});

const baseEntries = { event_id: v.optional(v.string(), ''), timestamp: v.optional(timestamp) };

export const twinUpdatePayload = v.object({
  ...baseEntries,
  twin: v.record(v.string(), v.nullable(msgTwin)),
});

export const twinGetPayload = v.object(baseEntries);
export const membershipGetPayload = v.object(baseEntries);

export const stateUpdatePayload = v.object({ ...baseEntries, state: v.pipe(v.string(), v.minLength(1)) });

/** The reason a payload that does not decode is refused with: `issue` is undefined for one that is not JSON. */
export type Refusal = (json: unknown, issue: SchemaIssue | undefined) => string;

/** Names the first failing field. */
export const namedRefusal: Refusal = (_json, issue) =>
  `Unmarshal request body failed, please check the request: ${issue ? `${issue.path || 'body'}: ${issue.message}` : 'not valid JSON'}`;

/**
 * `twin/update` is refused with EdgeCore's own texts (dttype.UnmarshalDeviceTwinUpdate):
 * ErrorUpdate for a body without `twin` (or with `twin: null`), ErrorUnmarshal for any body Go's
 * json.Unmarshal would not decode into a DeviceTwinUpdate.
 */
export const twinUpdateRefusal: Refusal = (json, issue) => {
  const twin = json && typeof json === 'object' ? (json as { twin?: unknown }).twin : undefined;
  if (issue?.path === 'twin' && (twin === undefined || twin === null)) return 'Update twin error, key:twin does not exist';
  return 'Unmarshal update request body failed, please check the request';
};

/** JSON-decodes and parses; a refusal's reason comes from `refusal`. */
export function decode<S extends v.GenericSchema>(
  schema: S,
  payload: Buffer,
  refusal: Refusal = namedRefusal,
): { ok: true; value: v.InferOutput<S> } | { ok: false; reason: string; eventId: string } {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: refusal(undefined, undefined), eventId: '' };
  }
  const parsed = parseWith(schema, json);
  if (parsed.ok) return parsed;
  const eventId = json && typeof json === 'object' && typeof (json as { event_id?: unknown }).event_id === 'string' ? (json as { event_id: string }).event_id : '';
  return { ok: false, reason: refusal(json, parsed.issues[0]), eventId };
}
