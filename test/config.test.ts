/**
 * resolveConfig: defaults, YAML file, EDGE_AGENT_<SECTION>__<KEY> environment overrides and flags,
 * in that order of precedence, and ConfigErrors that name the offending path.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism, totalmem } from 'node:os';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { envOverrides, resolveConfig, type Config } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { defaultRunDir } from '../src/paths.js';
import { tempDir } from './support/agent.js';
import { thrown } from './support/errors.js';
import { wifiConfig } from '../src/wifi/config.js';

// The default node name comes from the host name, made a DNS-1123 name.
vi.mock('node:os', async (importOriginal) => ({ ...(await importOriginal<typeof import('node:os')>()), hostname: () => 'Edge_Box-01.Local' }));

let dir: string;
let counter = 0;

function configFile(yaml: string): string {
  const file = join(dir, `config-${++counter}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

const configError = (fn: () => unknown): ConfigError => thrown(ConfigError, fn);

const DEFAULTS: Config = {
  node: 'edge-box-01.local',
  dataDir: './data',
  profiles: ['./device-profiles/demo'],
  mqtt: { host: '127.0.0.1', port: 1883, maxPayloadBytes: 65536, allowAnonymous: 'loopback', users: [], maxPacketBytes: 262144, maxConnections: 1000, maxKeepaliveSeconds: 300, maxRetainedMessages: 1000, maxRetainedBytes: 4194304, maxSubscriptionsPerClient: 1000, maxPersistentSessions: 1000, maxQueuedMessages: 1000, maxQueuedBytes: 16777216 },
  api: { host: '127.0.0.1', port: 9180, hosts: [] },
  twin: { historySize: 100, maxExtraProperties: 32, tombstoneTtlMs: 86_400_000, maxGetBytes: 262_144, synchronous: 'full', cacheKiB: 512, commitWindowMs: 100 },
  log: { level: 'info' },
  wifi: wifiConfig({}),
  cloud: {
    enabled: false,
    httpsPort: 10002,
    websocketPort: 10000,
    projectId: 'e632aba927ea4ac2b575ec1603d56f10',
    nodeNamespace: 'default',
    heartbeatMs: 15_000,
    nodeStatusIntervalMs: 10_000,
    kubeedgeVersion: '1.23',
    resendMs: 60_000,
    window: 256,
    queue: { coalesce: false, maxBytes: 256 * 1024 * 1024, whenFull: 'drop-oldest' },
  },
  workloads: {
    enabled: false,
    images: ['./images/build'],
    listen: { host: '0.0.0.0', port: 9443, handshakes: { burst: 20, perSecond: 5 }, refusalLogIntervalMs: 60_000 },
    peers: [],
    maxArtifactBytes: 1024 ** 3,
    transferTimeoutMs: 600_000,
    peerMemoryMiB: Math.floor(totalmem() / 2 / 1024 ** 2),
    peerCpus: availableParallelism(),
    migrationTimeoutMs: 120_000,
    workloads: [],
    consoleMaxBytes: 1024 ** 2,
    historySize: 200,
    policy: {
      enabled: false,
      intervalMs: 5000,
      holdMs: 15_000,
      cpuLoad: { out: 90, back: 60 },
      freeMemoryMiB: { out: 64, back: 128 },
      battery: { out: 20, back: 40 },
      temperature: { out: 80, back: 70 },
      linkQuality: { min: 30 },
      offloadModes: ['mission'],
    },
  },
  dmi: { enabled: true, callTimeoutMs: 10_000, probeIntervalMs: 5000, maxCallsPerSecond: 1000, maxMessageBytes: 1024 * 1024 },
  runDir: defaultRunDir(process.getuid?.(), process.env),
};

beforeAll(() => {
  dir = tempDir('config-test-');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('defaults', () => {
  it('run out of the box', () => {
    expect(resolveConfig({})).toEqual(DEFAULTS);
  });

  it('ignore environment variables without the EDGE_AGENT_ prefix', () => {
    expect(resolveConfig({ env: { PATH: '/usr/bin', HOME: '/root', MQTT__PORT: '1', EDGE_AGENTX: '1', edge_agent_mqtt__port: '2' } })).toEqual(DEFAULTS);
  });

  it('an empty config file changes nothing', () => {
    expect(resolveConfig({ file: configFile('') })).toEqual(DEFAULTS);
    expect(resolveConfig({ file: configFile('# comments only\n') })).toEqual(DEFAULTS);
  });
});

describe('YAML file', () => {
  it('sets every section; the keys a section leaves out keep their defaults', () => {
    const file = configFile(`
node: edge-7
dataDir: /var/lib/edge-agent
profiles: [/etc/edge-agent/profiles, ./more]
mqtt:
  port: 1884
  url: mqtt://broker.local:1883
api:
  host: 0.0.0.0
twin:
  historySize: 10
log:
  level: debug
`);
    expect(resolveConfig({ file })).toEqual({
      node: 'edge-7',
      dataDir: '/var/lib/edge-agent',
      profiles: ['/etc/edge-agent/profiles', './more'],
      mqtt: { ...DEFAULTS.mqtt, port: 1884, url: 'mqtt://broker.local:1883' },
      api: { ...DEFAULTS.api, host: '0.0.0.0' },
      twin: { ...DEFAULTS.twin, historySize: 10 },
      log: { level: 'debug' },
      wifi: DEFAULTS.wifi,
      cloud: DEFAULTS.cloud,
      workloads: DEFAULTS.workloads,
      dmi: DEFAULTS.dmi,
      runDir: DEFAULTS.runDir,
    });
  });
});

describe('environment overrides', () => {
  it.each<[Record<string, string>, Partial<Config>]>([
    [{ EDGE_AGENT_MQTT__PORT: '1884' }, { mqtt: { ...DEFAULTS.mqtt, port: 1884 } }],
    [{ EDGE_AGENT_MQTT__MAX_PAYLOAD_BYTES: '1024' }, { mqtt: { ...DEFAULTS.mqtt, maxPayloadBytes: 1024 } }],
    [{ EDGE_AGENT_MQTT__URL: 'mqtt://broker:1883' }, { mqtt: { ...DEFAULTS.mqtt, url: 'mqtt://broker:1883' } }],
    [{ EDGE_AGENT_MQTT__HOST: '0.0.0.0', EDGE_AGENT_MQTT__PORT: '0' }, { mqtt: { ...DEFAULTS.mqtt, host: '0.0.0.0', port: 0 } }],
    [{ EDGE_AGENT_API__PORT: '9999' }, { api: { ...DEFAULTS.api, port: 9999 } }],
    [{ EDGE_AGENT_API__HOSTS: '[Gateway.LAN, "[fd00::2]"]' }, { api: { ...DEFAULTS.api, hosts: ['gateway.lan', '[fd00::2]'] } }],
    [{ EDGE_AGENT_API__SOCKET: '/run/edge-agent/api.sock' }, { api: { ...DEFAULTS.api, socket: '/run/edge-agent/api.sock' } }],
    // The CLI's token shares the prefix but is no config key.
    [{ EDGE_AGENT_TOKEN: 'abc' }, {}],
    [{ EDGE_AGENT_TWIN__HISTORY_SIZE: '5' }, { twin: { ...DEFAULTS.twin, historySize: 5 } }],
    [{ EDGE_AGENT_LOG__LEVEL: 'warn' }, { log: { level: 'warn' } }],
    [{ EDGE_AGENT_NODE: 'edge-9' }, { node: 'edge-9' }],
    [{ EDGE_AGENT_DATA_DIR: '/srv/data' }, { dataDir: '/srv/data' }],
    [{ EDGE_AGENT_PROFILES: '/a/profiles:/b/profiles:./c' }, { profiles: ['/a/profiles', '/b/profiles', './c'] }],
    [{ EDGE_AGENT_PROFILES: '/only/one' }, { profiles: ['/only/one'] }],
  ])('%o', (env, expected) => {
    expect(resolveConfig({ env })).toEqual({ ...DEFAULTS, ...expected });
  });

  it('envOverrides turns the names into a tree of camelCase keys with YAML scalar values', () => {
    expect(envOverrides({ EDGE_AGENT_MQTT__MAX_PAYLOAD_BYTES: '1024', EDGE_AGENT_MQTT__HOST: 'h', EDGE_AGENT_DATA_DIR: 'd', EDGE_AGENT_PROFILES: 'x:y', OTHER: 'z' })).toEqual({
      mqtt: { maxPayloadBytes: 1024, host: 'h' },
      dataDir: 'd',
      profiles: ['x', 'y'],
    });
  });

  it('override the file, key by key', () => {
    const file = configFile('mqtt: {host: file-host, port: 2000}\nprofiles: [/from/file]\nlog: {level: error}\n');
    expect(resolveConfig({ file, env: { EDGE_AGENT_MQTT__PORT: '3000', EDGE_AGENT_PROFILES: '/from/env' } })).toMatchObject({
      mqtt: { host: 'file-host', port: 3000 },
      profiles: ['/from/env'],
      log: { level: 'error' },
    });
  });
});

describe('flags', () => {
  const file = () => configFile('node: file-node\nmqtt: {host: file-host, port: 2000}\napi: {port: 2001}\n');
  const env = { EDGE_AGENT_MQTT__PORT: '3000', EDGE_AGENT_API__PORT: '3001', EDGE_AGENT_PROFILES: '/env/a:/env/b', EDGE_AGENT_LOG__LEVEL: 'warn' };

  it('override environment and file', () => {
    const config = resolveConfig({ file: file(), env, flags: { node: 'flag-node', mqtt: { port: 4000 }, profiles: ['/flag'], log: { level: 'trace' } } });
    expect(config).toMatchObject({
      node: 'flag-node',
      mqtt: { host: 'file-host', port: 4000 }, // host still from the file
      api: { port: 3001 }, // from the environment
      profiles: ['/flag'], // lists are replaced, not merged
      log: { level: 'trace' },
    });
  });

  it('left undefined (as the CLI passes unset options) do not override anything', () => {
    const config = resolveConfig({
      file: file(),
      env,
      flags: { node: undefined, dataDir: undefined, profiles: undefined, mqtt: { port: undefined, url: undefined }, api: { port: undefined }, log: { level: undefined } },
    });
    expect(config).toMatchObject({ node: 'file-node', mqtt: { host: 'file-host', port: 3000 }, api: { port: 3001 }, profiles: ['/env/a', '/env/b'], log: { level: 'warn' } });
  });
});

describe('errors', () => {
  it.each<[string, Parameters<typeof resolveConfig>[0], RegExp]>([
    ['port that is not a number (env)', { env: { EDGE_AGENT_MQTT__PORT: 'abc' } }, /^config: mqtt\.port \(from EDGE_AGENT_MQTT__PORT\): .*expected number, received "abc"/],
    ['port out of range (env)', { env: { EDGE_AGENT_MQTT__PORT: '70000' } }, /^config: mqtt\.port \(from EDGE_AGENT_MQTT__PORT\): .*65535/],
    ['negative port (flag)', { flags: { api: { port: -1 } } }, /^config: api\.port: .*0/],
    ['fractional port (flag)', { flags: { mqtt: { port: 1.5 } } }, /^config: mqtt\.port: .*int/i],
    ['history size 0 (env)', { env: { EDGE_AGENT_TWIN__HISTORY_SIZE: '0' } }, /^config: twin\.historySize \(from EDGE_AGENT_TWIN__HISTORY_SIZE\): /],
    ['unknown log level (flag)', { flags: { log: { level: 'loud' } } }, /^config: log\.level: .*"info"/],
    ['node name that is not DNS-1123 (flag)', { flags: { node: 'Edge_Box' } }, /^config: node: must be a DNS-1123 name/],
    ['broker URL that is not a URL (env)', { env: { EDGE_AGENT_MQTT__URL: 'not-a-url' } }, /^config: mqtt\.url \(from EDGE_AGENT_MQTT__URL\): /],
    ['profiles that are not a list (flag)', { flags: { profiles: '/one' } }, /^config: profiles: .*array/],
    ['section that is not an object (env)', { env: { EDGE_AGENT_MQTT: '5' } }, /^config: mqtt \(from EDGE_AGENT_MQTT\): .*object/],
    ['unknown key in a section (env)', { env: { EDGE_AGENT_MQTT__PROT: '1' } }, /^config: mqtt: Unrecognized key: "prot"/],
    ['unknown top-level key (env)', { env: { EDGE_AGENT_MQTT_PORT: '1' } }, /^config: \(root\): Unrecognized key: "mqttPort"/],
    ['unknown key (flag)', { flags: { api: { tls: true } } }, /^config: api: Unrecognized key: "tls"/],
    ['API host name with a port (env)', { env: { EDGE_AGENT_API__HOSTS: '[gateway.lan:9180]' } }, /^config: api\.hosts\.0: must be a host name or address .*without a port/],
  ])('%s', (_, options, message) => {
    expect(configError(() => resolveConfig(options)).message).toMatch(message);
  });

  it('name the file and the path for bad values and unknown keys in a file, one line each', () => {
    const file = configFile('mqtt:\n  port: http\n  prot: 1\nlog: {level: loud}\nextra: true\n');
    const lines = configError(() => resolveConfig({ file })).message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^${file}: mqtt\\.port: `)),
        `${file}: mqtt: Unrecognized key: "prot"`,
        expect.stringMatching(new RegExp(`^${file}: log\\.level: `)),
        `${file}: (root): Unrecognized key: "extra"`,
      ]),
    );
  });

  it('name the file for YAML it cannot parse', () => {
    const file = configFile('mqtt: [\n');
    expect(configError(() => resolveConfig({ file })).message).toMatch(new RegExp(`^config ${file}: `));
  });

  it('name the file when it cannot be read', () => {
    const file = join(dir, 'missing.yaml');
    expect(configError(() => resolveConfig({ file })).message).toMatch(new RegExp(`^config ${file}: ENOENT`));
  });
});
