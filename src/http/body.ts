/** The one JSON body reader and the one schema check that turns a bad body into a 400. */
import type { IncomingMessage } from 'node:http';
import type * as v from 'valibot';
import { AgentError } from '../errors.js';
import { parseWith } from '../schema.js';

/** The body as JSON (`undefined` when empty). Past `limit` bytes: 413, the rest read and dropped so the answer can still be sent. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= limit) chunks.push(chunk as Buffer);
  }
  if (size > limit) throw new AgentError(413, `body exceeds ${limit} bytes`);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new AgentError(400, 'body is not valid JSON');
  }
}

/** `value` parsed by `schema`, or a 400 naming every issue as `path: message`. */
export function parseBody<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const parsed = parseWith(schema, value);
  if (parsed.ok) return parsed.value;
  throw new AgentError(400, parsed.issues.map((i) => `${i.path || 'body'}: ${i.message}`).join('; '));
}
