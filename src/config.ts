/**
 * One typed config: defaults that run out of the box, a YAML file, environment overrides
 * (`EDGE_AGENT_<SECTION>__<KEY>`), then command-line flags, in that order of precedence.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import yaml from 'js-yaml';
import { z } from 'zod';

const port = z.number().int().min(0).max(65535);

export const configSchema = z
  .object({
    node: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS-1123 name, as Kubernetes node names are')
      .default(() => hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-')),
    dataDir: z.string().default('./data'),
    profiles: z.array(z.string()).default(['./device-profiles']),
    mqtt: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: port.default(1883),
        /** An external broker (`mqtt://host:1883`) instead of the embedded one. */
        url: z.string().url().optional(),
        maxPayloadBytes: z.number().int().positive().default(64 * 1024),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 1883, maxPayloadBytes: 64 * 1024 }),
    api: z
      .object({ host: z.string().default('127.0.0.1'), port: port.default(9180) })
      .strict()
      .default({ host: '127.0.0.1', port: 9180 }),
    twin: z
      .object({ historySize: z.number().int().min(1).max(10_000).default(100) })
      .strict()
      .default({ historySize: 100 }),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

const ENV_PREFIX = 'EDGE_AGENT_';

type Tree = Record<string, unknown>;

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `EDGE_AGENT_MQTT__MAX_PAYLOAD_BYTES=1024` becomes `{mqtt: {maxPayloadBytes: 1024}}`; values are YAML scalars. */
export function envOverrides(env: NodeJS.ProcessEnv): Tree {
  const tree: Tree = {};
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const path = key.slice(ENV_PREFIX.length).split('__').map(camel);
    let node = tree;
    for (const segment of path.slice(0, -1)) {
      node[segment] ??= {};
      if (typeof node[segment] !== 'object') throw new ConfigError(`${key}: ${segment} is set both as a value and as a section`);
      node = node[segment] as Tree;
    }
    const value: unknown = yaml.load(raw);
    node[path[path.length - 1]!] = path[0] === 'profiles' ? String(raw).split(':') : value;
  }
  return tree;
}

function merge(base: Tree, override: Tree): Tree {
  const out: Tree = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === undefined) continue;
    const current = out[key];
    const bothObjects = value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current);
    out[key] = bothObjects ? merge(current as Tree, value as Tree) : value;
  }
  return out;
}

export class ConfigError extends Error {}

export function resolveConfig(options: { file?: string; env?: NodeJS.ProcessEnv; flags?: Tree }): Config {
  let fromFile: Tree = {};
  if (options.file) {
    try {
      fromFile = (yaml.load(readFileSync(options.file, 'utf8')) ?? {}) as Tree;
    } catch (error) {
      throw new ConfigError(`config ${options.file}: ${(error as Error).message}`);
    }
  }
  const merged = merge(merge(fromFile, envOverrides(options.env ?? {})), options.flags ?? {});
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const env = options.env ?? {};
    const describe = (path: PropertyKey[]) => {
      const name = ENV_PREFIX + path.map((p) => String(p).replace(/([A-Z])/g, '_$1').toUpperCase()).join('__');
      const where = path.join('.') || '(root)';
      if (name in env) return `config: ${where} (from ${name})`;
      return `${options.file ?? 'config'}: ${where}`;
    };
    throw new ConfigError(parsed.error.issues.map((i) => `${describe(i.path)}: ${i.message}`).join('\n'));
  }
  return parsed.data;
}
