/**
 * One typed config: defaults that run out of the box, a YAML file, environment overrides
 * (`EDGE_AGENT_<SECTION>__<KEY>`), then command-line flags, in that order of precedence.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import yaml from 'js-yaml';
import * as v from 'valibot';
import { ConfigError } from './errors.js';
import { SYNCHRONOUS_MODES } from './db/synchronous.js';
import { defaultRunDir } from './paths.js';
import { parseWith } from './schema.js';
import { apiSection, API_TOKEN_VARIABLE } from './api/config.js';
import { mqttSection } from './bus/config.js';
import { cloudSection } from './cloud/config.js';
import { dmiSection } from './dmi/config.js';
import { wifiSection } from './wifi/config.js';
import { workloadsSection } from './workloads/config.js';

const twinSection = v.strictObject({
  historySize: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)), 100),
  /** Properties a device may have beyond its DeviceModel's (KubeEdge adds unknown keys); an update that would add more is refused. */
  maxExtraProperties: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(10_000)), 32),
  /** How long a deleted property not in the DeviceModel is kept (as a `deleted` tombstone) before it is purged. */
  tombstoneTtlMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1000)), 24 * 60 * 60 * 1000),
  /** The largest twin a `twin/get` answer carries; a larger one is answered 413. */
  maxGetBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1024)), 256 * 1024),
  /** When twin.db syncs to the disk: `full`, acknowledged writes survive a power cut; `normal`, faster, they may not (src/db/database.ts). */
  synchronous: v.optional(v.picklist(SYNCHRONOUS_MODES), 'full'),
  /** SQLite's page cache for twin.db, at most: the twin itself is held in memory, so a small cache costs reads little. */
  cacheKiB: v.optional(v.pipe(v.number(), v.integer(), v.minValue(64)), 512),
  /**
   * How long mapper reports gather before one commit (one sync to the disk): fewer syncs, less CPU
   * and SD-card wear. Writes that are acknowledged (MQTT QoS 1, the API, DMI) commit at once.
   */
  commitWindowMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000)), 100),
});
const logSection = v.strictObject({ level: v.optional(v.picklist(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info') });

/** Unknown keys are refused; a missing section takes its defaults. */
export const configSchema = v.strictObject({
  node: v.optional(
    v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS-1123 name, as Kubernetes node names are')),
    () => hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-'),
  ),
  dataDir: v.optional(v.string(), './data'),
  profiles: v.optional(v.array(v.string()), ['./device-profiles/demo']),
  mqtt: v.optional(mqttSection, {}),
  api: v.optional(apiSection, {}),
  twin: v.optional(twinSection, {}),
  log: v.optional(logSection, {}),
  wifi: v.optional(wifiSection, {}),
  cloud: v.optional(cloudSection, {}),
  workloads: v.optional(workloadsSection, {}),
  dmi: v.optional(dmiSection, {}),
  /** Control sockets and helper scripts (wpa_supplicant, DHCP), private to the agent's user; unix socket paths must stay short. */
  runDir: v.optional(v.string(), () => defaultRunDir(process.getuid?.(), process.env)),
});

export type Config = v.InferOutput<typeof configSchema>;

const ENV_PREFIX = 'EDGE_AGENT_';

type Tree = Record<string, unknown>;

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `EDGE_AGENT_MQTT__MAX_PAYLOAD_BYTES=1024` becomes `{mqtt: {maxPayloadBytes: 1024}}`; values are YAML scalars. */
export function envOverrides(env: NodeJS.ProcessEnv): Tree {
  const tree: Tree = {};
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || key === API_TOKEN_VARIABLE || raw === undefined) continue;
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

/** `override` laid over `base`, sections merged key by key; an `undefined` value keeps the base's. */
export function merge(base: Tree, override: Tree): Tree {
  const out: Tree = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === undefined) continue;
    const current = out[key];
    const bothObjects = value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current);
    out[key] = bothObjects ? merge(current as Tree, value as Tree) : value;
  }
  return out;
}

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
  const parsed = parseWith(configSchema, merged);
  if (!parsed.ok) {
    const env = options.env ?? {};
    const describe = (path: string) => {
      const name = ENV_PREFIX + path.split('.').map((p) => p.replace(/([A-Z])/g, '_$1').toUpperCase()).join('__');
      const where = path || '(root)';
      if (path && name in env) return `config: ${where} (from ${name})`;
      return `${options.file ?? 'config'}: ${where}`;
    };
    throw new ConfigError(parsed.issues.map((i) => `${describe(i.path)}: ${i.message}`).join('\n'));
  }
  return parsed.value;
}
