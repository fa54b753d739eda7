/** Schemas of the payloads devices and mappers publish on the KubeEdge `$hw/events/…` topics. */
import { z } from 'zod';

const timestamp = z.number().int();
const version = z.object({ cloud: z.number().int(), edge: z.number().int() });
const twinValue = z.object({ value: z.string().optional(), metadata: z.object({ timestamp: timestamp.optional() }).nullish() });

const msgTwin = z.object({
  expected: twinValue.nullish(),
  actual: twinValue.nullish(),
  optional: z.boolean().nullish(),
  metadata: z.object({ type: z.string().optional() }).nullish(),
  expected_version: version.nullish(),
  actual_version: version.nullish(),
});

const baseMessage = z.object({ event_id: z.string().default(''), timestamp: timestamp.optional() });

export const twinUpdatePayload = baseMessage.extend({
  twin: z.record(z.string(), msgTwin.nullable(), { error: 'Update twin error, key:twin does not exist' }),
});

export const twinGetPayload = baseMessage;
export const membershipGetPayload = baseMessage;

export const stateUpdatePayload = baseMessage.extend({ state: z.string().min(1) });

export type TwinUpdatePayload = z.infer<typeof twinUpdatePayload>;

/** JSON-decodes and parses; the error names the first failing field as EdgeCore's decoder would. */
export function decode<T>(schema: z.ZodType<T>, payload: Buffer): { ok: true; value: T } | { ok: false; reason: string; eventId: string } {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'Unmarshal request body failed, please check the request: not valid JSON', eventId: '' };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0]!;
  const eventId = json && typeof json === 'object' && typeof (json as { event_id?: unknown }).event_id === 'string' ? (json as { event_id: string }).event_id : '';
  return { ok: false, reason: `Unmarshal request body failed, please check the request: ${issue.path.join('.') || 'body'}: ${issue.message}`, eventId };
}
