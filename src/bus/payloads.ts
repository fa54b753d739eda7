/** Schemas of the payloads devices and mappers publish on the KubeEdge `$hw/events/…` topics. */
import * as v from 'valibot';
import { parseWith } from '../schema.js';

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
  twin: v.record(v.string(), v.nullable(msgTwin), 'Update twin error, key:twin does not exist'),
});

export const twinGetPayload = v.object(baseEntries);
export const membershipGetPayload = v.object(baseEntries);

export const stateUpdatePayload = v.object({ ...baseEntries, state: v.pipe(v.string(), v.minLength(1)) });

/** JSON-decodes and parses; the error names the first failing field as EdgeCore's decoder would. */
export function decode<S extends v.GenericSchema>(
  schema: S,
  payload: Buffer,
): { ok: true; value: v.InferOutput<S> } | { ok: false; reason: string; eventId: string } {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'Unmarshal request body failed, please check the request: not valid JSON', eventId: '' };
  }
  const parsed = parseWith(schema, json);
  if (parsed.ok) return parsed;
  const issue = parsed.issues[0]!;
  const eventId = json && typeof json === 'object' && typeof (json as { event_id?: unknown }).event_id === 'string' ? (json as { event_id: string }).event_id : '';
  return { ok: false, reason: `Unmarshal request body failed, please check the request: ${issue.path || 'body'}: ${issue.message}`, eventId };
}
