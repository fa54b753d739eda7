/** Parsing external input with one schema at the edge: valibot, with issues as `path: message`. */
import * as v from 'valibot';
import { ConfigError } from './errors.js';

export interface SchemaIssue {
  /** Dotted field path, `''` for the root. */
  path: string;
  message: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; issues: SchemaIssue[] };

export function parseWith<S extends v.GenericSchema>(schema: S, input: unknown): Parsed<v.InferOutput<S>> {
  const result = v.safeParse(schema, input);
  if (result.success) return { ok: true, value: result.output };
  return { ok: false, issues: result.issues.map(describe) };
}

/** One wording whatever the issue: `expected number, received "abc"`, `required`, `Unrecognized key: "x"`, or the schema's own message. */
function describe(issue: v.BaseIssue<unknown>): SchemaIssue {
  const keys = (issue.path ?? []).map((p) => String(p.key));
  if (issue.type === 'strict_object' && issue.expected === 'never') {
    return { path: keys.slice(0, -1).join('.'), message: `Unrecognized key: ${issue.received}` };
  }
  if (!issue.message.startsWith('Invalid ')) return { path: keys.join('.'), message: issue.message };
  if (issue.kind === 'schema' && issue.received === 'undefined') return { path: keys.join('.'), message: 'required' };
  const expected = issue.expected === null ? issue.type : /^[A-Z][a-z]+$/.test(issue.expected) ? issue.expected.toLowerCase() : issue.expected;
  return { path: keys.join('.'), message: `expected ${expected}, received ${issue.received}` };
}

/** The parsed value, or one ConfigError naming `where` and every issue. */
export function parseOrThrow<S extends v.GenericSchema>(schema: S, input: unknown, where: string): v.InferOutput<S> {
  const parsed = parseWith(schema, input);
  if (parsed.ok) return parsed.value;
  throw new ConfigError(`${where}: ${parsed.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
}

/** A count or a duration that must be at least 1. */
export const positiveInteger = v.pipe(v.number(), v.integer(), v.minValue(1));

/** A TCP port to listen on; 0 picks a free one. */
export const portNumber = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535));
