#!/usr/bin/env node
/**
 * `edge-agent <command>`: the agent itself, manifest validation, and clients of a running agent.
 * Started through bin/edge-agent, a POSIX sh launcher that adds the V8 flags keeping the young
 * generation small and the heap growing slowly (the agent is meant for 1 GB gateways;
 * bench/footprint measures it): a `#!/usr/bin/env -S` line cannot carry them on BusyBox.
 */
import type { CloudStatus } from './cloud/edgehub.js';
import type { DeviceSummary, TwinView } from './twin/routes.js';
import type { Placement } from './wifi/paths.js';
import { TRAFFIC } from './wifi/config.js';
import type { WifiView } from './wifi/wifi.js';
import type { WorkloadList } from './workloads/index.js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ApiClient, ApiClientError, type ApiToken } from './api/client.js';
import { API_TOKEN_VARIABLE } from './api/config.js';
import { apiTokenFile, readApiToken } from './api/token.js';
import { resolveConfig, type Config } from './config.js';
import { ConfigError } from './errors.js';
import { formatError, loadCatalog } from './devices/load.js';
import { validateVisitors } from './mapperhost/validate.js';
import { systemdNotifier } from './systemd-notify.js';
import { builtinMappers } from '../mappers/builtin.js';

const USAGE = `Usage: edge-agent <command> [options]

Commands:
  start [--config FILE] [--profiles DIR]... [--data DIR] [--mqtt-port N] [--mqtt-url URL]
        [--api-port N] [--node NAME] [--log-level LEVEL]
                                  run the agent (embedded MQTT broker, SQLite twin, mappers)
  validate PATH...                check Device/DeviceModel manifests (files or directories)
  passwd                          read a password on stdin, print its hash for mqtt.users[].passwordHash
  devices                         list the devices of a running agent
  twin get NS/NAME                show a device's twin (desired and reported values)
  twin set NS/NAME PROPERTY VALUE set a desired value
  wifi                            WiFi identities, their APs and link quality, and the APs in reach
  cloud                           the KubeEdge cloud link: connection, node, queued reports
  workloads [list]                VM and unikernel workloads: state, origin, where they run
  workloads run|stop|show NAME    start, stop, or show one (history, console)
  workloads pause|resume NAME     stop or let run a workload's guest, keeping its state
  workloads migrate NAME PEER     live-migrate a workload to a peer agent
  workloads return NAME           bring a workload back from the peer it went to
  workloads identity              this agent's peer certificate fingerprint (for the peers' config)
  modbus scan (--tcp HOST:PORT | --rtu DEVICE --baud N) [--units 1-247] [--registers 0-9999]
        [--timeout MS] [--deadline S]
                                  which unit ids answer on a Modbus line, their FC43 identification,
                                  and which holding and input register ranges answer (--json too)
  check [--config FILE]           self-diagnosis: config, data dir, ports, serial devices, radios,
                                  QEMU/KVM, cloud; one line per check, exit 1 when one fails
  help, --version                 this text; the version

Client commands take --api URL or --api unix:PATH (default: the configured address), --json,
and the API token: --token TOKEN (other users see it in ps), else EDGE_AGENT_TOKEN, else the
agent's own, read from api-token in --data DIR (default: the configured data dir).
Environment: EDGE_AGENT_<SECTION>__<KEY> overrides the config file, e.g. EDGE_AGENT_MQTT__PORT=1884.`;

class UsageError extends Error {}

const options = {
  config: { type: 'string' },
  profiles: { type: 'string', multiple: true },
  data: { type: 'string' },
  'mqtt-port': { type: 'string' },
  'mqtt-url': { type: 'string' },
  'api-port': { type: 'string' },
  node: { type: 'string' },
  'log-level': { type: 'string' },
  api: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  tcp: { type: 'string' },
  rtu: { type: 'string' },
  baud: { type: 'string' },
  units: { type: 'string' },
  registers: { type: 'string' },
  timeout: { type: 'string' },
  deadline: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a number, got ${JSON.stringify(value)}`);
  return Number(value);
}

function config(values: Values) {
  return resolveConfig({
    file: values.config,
    env: process.env,
    flags: {
      node: values.node,
      dataDir: values.data,
      profiles: values.profiles,
      mqtt: { port: integer('mqtt-port', values['mqtt-port']), url: values['mqtt-url'] },
      api: { port: integer('api-port', values['api-port']) },
      log: { level: values['log-level'] },
    },
  });
}

async function start(values: Values): Promise<void> {
  // Every file the agent makes is its user's alone (databases, keys, snapshots, consoles, sockets):
  // also those that libraries and child processes (SQLite, QEMU, wpa_supplicant) create.
  process.umask(0o077);
  const { createLogger, flushLogs } = await import('./log.js');
  const { startAgent } = await import('./agent.js');
  const cfg = config(values);
  const log = createLogger(cfg.log.level);
  const agent = await startAgent(cfg, log);
  // startAgent resolves with the broker listening and the database open: ready for systemd. The
  // cloud link is not awaited: a gateway offline for hours still serves its devices (/readyz says it).
  const systemd = systemdNotifier(log);
  systemd.ready(`serving: mqtt ${agent.bus.url}, api port ${agent.apiPort}`);
  // No await from "agent ready" to here: a SIGTERM right after the ready line must find its handler.
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    systemd.stopping();
    log.info({ signal }, 'stopping');
    agent
      .stop()
      .then(
        () => 0,
        (error: unknown) => {
          log.error({ err: error }, 'stop failed');
          return 1;
        },
      )
      .then(async (code) => {
        await flushLogs(log);
        process.exit(code);
      });
  };
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading device profiles');
    agent.reload();
  });
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

/** `edge-agent 0.1.0 (Node.js v20.20.2, linux-arm64)`: the package.json two folders above the compiled cli.js, in a checkout and in the package. */
function version(): string {
  const { version: own } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `edge-agent ${own} (Node.js ${process.version}, ${process.platform}-${process.arch})`;
}

async function check(values: Values): Promise<number> {
  const { runChecks, formatCheck } = await import('./check.js');
  let cfg: Config;
  try {
    cfg = config(values);
  } catch (error) {
    if (!(error instanceof ConfigError || error instanceof UsageError)) throw error;
    console.log(formatCheck({ outcome: 'fail', name: 'config', detail: error.message.replace(/\n/g, '; ') }));
    return 1;
  }
  console.log(formatCheck({ outcome: 'ok', name: 'config', detail: `${values.config ?? 'defaults'} valid (node ${cfg.node})` }));
  const results = await runChecks(cfg);
  for (const result of results) console.log(formatCheck(result));
  return results.some((r) => r.outcome === 'fail') ? 1 : 0;
}

function validate(paths: string[]): number {
  if (paths.length === 0) throw new UsageError('validate needs at least one PATH');
  const catalog = loadCatalog(paths);
  const visitorErrors = validateVisitors(catalog, builtinMappers);
  const errors = [...catalog.errors, ...visitorErrors];
  // A device whose visitors its mapper refuses is loaded, but not valid.
  const refused = new Set(visitorErrors.map((e) => `${e.file}\0${e.index}`));
  const devices = [...catalog.devices.values()].filter((d) => !refused.has(`${d.source.file}\0${d.source.index}`)).length;
  for (const note of catalog.notes) console.log(`note: ${note.file}: document ${note.index}: ${note.note}`);
  for (const error of errors) console.error(`error: ${formatError(error)}`);
  console.log(`${devices} devices, ${catalog.models.size} device models valid; ${errors.length} errors`);
  return errors.length === 0 ? 0 : 1;
}

/** The API at --api, else at the configured address; the config is read only when a flag leaves something to it. */
function client(values: Values): ApiClient {
  let configured: Config | undefined;
  const cfg = () => (configured ??= config(values));
  return new ApiClient(values.api ?? `http://${cfg().api.host}:${cfg().api.port}`, apiToken(values, cfg));
}

/** --token, else EDGE_AGENT_TOKEN, else the token the agent made in its data dir: on the gateway, as the agent's user, no flag is needed. */
function apiToken(values: Values, cfg: () => Config): ApiToken {
  if (values.token !== undefined) return { value: values.token.trim(), source: 'token from --token' };
  const fromEnv = process.env[API_TOKEN_VARIABLE];
  if (fromEnv !== undefined) return { value: fromEnv.trim(), source: `token from ${API_TOKEN_VARIABLE}` };
  const file = apiTokenFile(cfg().dataDir);
  try {
    return { value: readApiToken(file), source: `token read from ${file}` };
  } catch (error) {
    return { source: `no token: cannot read ${file} (${(error as NodeJS.ErrnoException).code}); --token, ${API_TOKEN_VARIABLE} or --data DIR give one` };
  }
}

function deviceRef(ref: string | undefined): string {
  if (!ref || !/^[^/]+\/[^/]+$/.test(ref)) throw new UsageError(`expected NS/NAME, got ${JSON.stringify(ref ?? '')}`);
  return ref
    .split('/')
    .map(encodeURIComponent)
    .join('/');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

async function devices(values: Values): Promise<void> {
  const { devices: list } = await client(values).request<{ devices: DeviceSummary[] }>('GET', '/api/v1/devices');
  if (values.json) return console.log(JSON.stringify(list, null, 2));
  const rows = list.map((d) => [d.id, d.state, d.managed ? (d.servedBy ?? 'nobody') : 'other node', String(d.properties), d.lastOnline || '-', d.reason ?? '']);
  console.log(table([['DEVICE', 'STATE', 'SERVED BY', 'PROPERTIES', 'LAST ONLINE', 'REASON'], ...rows]));
}

async function twin(values: Values, args: string[]): Promise<void> {
  const [action, ref, property, value] = args;
  const path = `/api/v1/devices/${deviceRef(ref)}`;
  if (action === 'get') {
    const twins = await client(values).request<TwinView>('GET', `${path}/twin`);
    if (values.json) return console.log(JSON.stringify(twins, null, 2));
    const rows = Object.entries(twins).map(([key, t]) => [
      key,
      t.metadata?.type ?? '',
      t.expected?.value ?? '-',
      t.actual?.value ?? '-',
      t.actual?.metadata?.timestamp ? new Date(t.actual.metadata.timestamp).toISOString() : '-',
    ]);
    return console.log(table([['PROPERTY', 'TYPE', 'DESIRED', 'REPORTED', 'REPORTED AT'], ...rows]));
  }
  if (action === 'set') {
    if (property === undefined || value === undefined) throw new UsageError('twin set needs NS/NAME PROPERTY VALUE');
    const result = await client(values).request<unknown>('PUT', `${path}/twin/desired`, { [property]: value });
    return console.log(values.json ? JSON.stringify(result, null, 2) : `desired ${property}=${value} set on ${ref}`);
  }
  throw new UsageError(`unknown twin action ${JSON.stringify(action ?? '')} (get or set)`);
}

async function wifi(values: Values): Promise<void> {
  const state = await client(values).request<WifiView>('GET', '/api/v1/wifi');
  if (values.json) return console.log(JSON.stringify(state, null, 2));
  const paths = `agent traffic: ${TRAFFIC.map((traffic) => `${traffic} ${describePath(state.paths[traffic])}`).join('; ')}`;
  if ('status' in state) return console.log(`wifi ${state.status} on ${state.radio}${'error' in state ? `: ${state.error}` : ''}\n${paths}`);
  const dash = (value: unknown) => (value === undefined ? '-' : String(value));
  console.log(`${state.backend} on ${state.radio}: channels ${state.channels.join(', ') || '-'} (radio can hold ${state.channelCapacity} at once)`);
  if (state.warning) console.log(`warning: ${state.warning}`);
  const identities = state.identities.map((i) => [
    i.name, i.mac || '-', i.status, dash(i.ssid), dash(i.bssid), dash(i.channel), i.signal === undefined ? '-' : `${i.signal} dBm`,
    i.txBitrate === undefined ? '-' : `${i.txBitrate} Mbit/s`, dash(i.score?.toFixed(1)), i.trusted === undefined ? '-' : i.trusted ? 'yes' : 'no', dash(i.address ?? i.error),
  ]);
  console.log(table([['IDENTITY', 'MAC', 'STATUS', 'SSID', 'BSSID', 'CH', 'SIGNAL', 'TX RATE', 'SCORE', 'TRUSTED', 'ADDRESS'], ...identities]));
  const aps = state.aps.map((ap) => [
    ap.ssid, ap.bssid, String(ap.channel), `${ap.signal} dBm`, ap.security, ap.trusted ? 'yes' : 'no',
    ap.utilization === undefined ? '-' : `${Math.round(ap.utilization * 100)}%`, ap.score.toFixed(1), ap.avoidedUntil ? `avoided ${Math.ceil((ap.avoidedUntil - Date.now()) / 1000)} s` : '',
  ]);
  console.log(`\n${table([['AP', 'BSSID', 'CH', 'SIGNAL', 'SECURITY', 'TRUSTED', 'CHANNEL BUSY', 'SCORE', ''], ...aps])}`);
  if (state.lastSwitch) console.log(`\nlast channel switch: ${state.lastSwitch.from.join(',')} -> ${state.lastSwitch.to.join(',')} in ${state.lastSwitch.ms} ms`);
  if (state.lastRecoveryMs !== undefined) console.log(`last recovery after losing an AP: ${state.lastRecoveryMs} ms`);
  console.log(`\n${paths}`);
}

/** Where a kind of the agent's own traffic leaves from (wifi.sensitive), in a few words. */
function describePath(path: Placement): string {
  if (path.via === 'system') return "leaves by the system's routes";
  if (path.via === 'none') return `waits: ${path.reason}`;
  return `leaves from ${path.identity}${path.address ? ` ${path.address}` : ''}${path.trusted ? ' (trusted)' : ' (untrusted: wifi.fallback any)'}`;
}

async function cloud(values: Values): Promise<void> {
  const state = await client(values).request<CloudStatus | { enabled: false }>('GET', '/api/v1/cloud');
  if (values.json) return console.log(JSON.stringify(state, null, 2));
  if ('enabled' in state) return console.log('cloud link disabled (cloud.enabled in the config)');
  const { link, outbox } = state;
  console.log(`${link.connected ? 'connected' : 'disconnected'} ${link.url} (KubeEdge ${state.kubeedgeVersion})${link.since && link.connected ? ` since ${link.since}` : ''}${link.lastError ? ` (last error: ${link.lastError})` : ''}`);
  console.log(`node ${state.registered ? 'registered' : 'not registered'}; certificate expires ${link.certificateExpires ?? '-'}`);
  console.log(`cloud link ${describePath(link.path)}${link.source ? `; connected from ${link.source}` : ''}`);
  console.log(`from the cloud: ${state.devices} devices, ${state.models} models, ${state.resources.length} other resources; ${link.badMessages} bad and ${state.unsupportedMessages} unsupported messages`);
  console.log(
    `reports queued: ${outbox.queued} (${outbox.bytes} bytes), in flight ${outbox.inFlight}, unanswered ${outbox.unconfirmed} (sent again ${outbox.resent} times), dropped ${outbox.dropped}, coalesced ${outbox.coalesced}`,
  );
  if (state.resources.length === 0) return;
  // Stored and acknowledged as EdgeCore's metamanager does; pods among them are not run.
  const rows = state.resources.map((r) => [r.type, r.key, r.resourceVersion ?? '-', r.type === 'pod' ? 'stored, not run' : 'stored']);
  console.log(table([['TYPE', 'RESOURCE', 'VERSION', 'STATE'], ...rows]));
}

async function workloadsCommand(values: Values, [action = 'list', name, peer]: string[]): Promise<void> {
  const api = client(values);
  const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));
  const need = (what: string | undefined, usage: string) => {
    if (!what) throw new UsageError(`workloads ${usage}`);
    return what;
  };
  switch (action) {
    case 'list': {
      const { workloads } = await api.request<WorkloadList>('GET', '/api/v1/workloads');
      if (values.json) return print(workloads);
      const rows = workloads.map((w) => [w.name, w.state, w.definition.image, w.origin, w.movedTo ?? (w.pid ? 'here' : '-'), w.pid ? `${w.pid} (${w.accel})` : '-', w.reason ?? '']);
      return console.log(table([['WORKLOAD', 'STATE', 'IMAGE', 'ORIGIN', 'WHERE', 'QEMU', 'REASON'], ...rows]));
    }
    case 'identity': {
      // Works without a running agent: the peers' config needs the fingerprint before either starts.
      const { identityDir } = await import('./workloads/index.js');
      const { loadOrCreateIdentity } = await import('./workloads/identity.js');
      const cfg = config(values);
      const identity = loadOrCreateIdentity(identityDir(cfg.dataDir), cfg.node);
      return values.json ? print({ node: cfg.node, fingerprint: identity.fingerprint }) : console.log(identity.fingerprint);
    }
    case 'run':
      return print(await api.request('POST', '/api/v1/workloads', { name: need(name, 'run NAME') }));
    case 'stop':
      return print(await api.request('DELETE', `/api/v1/workloads/${need(name, 'stop NAME')}`));
    case 'show':
      return print(await api.request('GET', `/api/v1/workloads/${need(name, 'show NAME')}`));
    case 'pause':
    case 'resume':
      return print(await api.request('POST', `/api/v1/workloads/${need(name, `${action} NAME`)}/${action}`));
    case 'migrate':
      need(peer, 'migrate NAME PEER');
      return print(await api.request('POST', `/api/v1/workloads/${need(name, 'migrate NAME PEER')}/migrate`, { peer }));
    case 'return':
      return print(await api.request('POST', `/api/v1/workloads/${need(name, 'return NAME')}/return`));
    default:
      throw new UsageError(`unknown workloads command ${JSON.stringify(action)}`);
  }
}

/** `--units 1-247`: an inclusive range within [min, max]; one number is a range of one. */
function range(flag: string, value: string | undefined, fallback: [number, number], min: number, max: number): [number, number] {
  if (value === undefined) return fallback;
  const match = /^(\d+)(?:-(\d+))?$/.exec(value);
  const [from, to] = match ? [Number(match[1]), Number(match[2] ?? match[1])] : [NaN, NaN];
  if (!(from >= min && to <= max && from <= to)) throw new UsageError(`--${flag} must be N or N-M within ${min}-${max}, got ${JSON.stringify(value)}`);
  return [from, to];
}

async function modbus(values: Values, [action]: string[]): Promise<void> {
  if (action !== 'scan') throw new UsageError('usage: edge-agent modbus scan (--tcp HOST:PORT | --rtu DEVICE --baud N)');
  const { scanModbus } = await import('../mappers/modbus/scan.js');
  const tcp = values.tcp === undefined ? undefined : /^(.+):(\d+)$/.exec(values.tcp);
  if (values.tcp !== undefined && !tcp) throw new UsageError(`--tcp must be HOST:PORT, got ${JSON.stringify(values.tcp)}`);
  if (!tcp === (values.rtu === undefined)) throw new UsageError('give either --tcp HOST:PORT or --rtu DEVICE');
  const transport = tcp
    ? { kind: 'tcp' as const, host: tcp[1]!, port: Number(tcp[2]) }
    : { kind: 'rtu' as const, path: values.rtu!, baudRate: integer('baud', values.baud) ?? 9600, dataBits: 8 as const, parity: 'none' as const, stopBits: 1 as const };
  // Progress only where a person watches; piped output stays the result alone.
  const progress = process.stderr.isTTY ? (message: string) => process.stderr.write(`\r\x1b[K${message}`) : undefined;
  const result = await scanModbus({
    transport,
    units: range('units', values.units, [1, 247], 0, 247),
    registers: range('registers', values.registers, [0, 9999], 0, 65535),
    timeoutMs: integer('timeout', values.timeout) ?? 300,
    deadlineMs: (integer('deadline', values.deadline) ?? 300) * 1000,
    progress,
  });
  if (progress) process.stderr.write('\r\x1b[K');
  if (values.json) return console.log(JSON.stringify(result, null, 2));
  const ranges = (r: Array<[number, number]>) => (r.length ? r.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ') : 'none');
  for (const unit of result.units) {
    const id = Object.entries(unit.identification ?? {}).map(([k, v]) => `${k}=${v}`);
    console.log(`unit ${unit.unit}${id.length ? `: ${id.join(', ')}` : ''}`);
    console.log(`  holding registers: ${ranges(unit.holdingRegisters)}`);
    console.log(`  input registers:   ${ranges(unit.inputRegisters)}`);
  }
  if (result.units.length === 0) console.log('no unit answered');
  if (!result.complete) console.log('deadline reached: the scan is incomplete (--deadline S, --units, --registers)');
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  const [command, ...rest] = positionals;
  if (values.version) {
    console.log(version());
    return 0;
  }
  if (values.help || !command || command === 'help') {
    console.log(USAGE);
    return 0;
  }
  switch (command) {
    case 'start':
      await start(values);
      return -1;
    case 'passwd':
      return (await import('./bus/passwd.js')).passwd(process.stdin);
    case 'validate':
      return validate(rest);
    case 'check':
      return check(values);
    case 'devices':
      await devices(values);
      return 0;
    case 'twin':
      await twin(values, rest);
      return 0;
    case 'wifi':
      await wifi(values);
      return 0;
    case 'cloud':
      await cloud(values);
      return 0;
    case 'workloads':
      await workloadsCommand(values, rest);
      return 0;
    case 'modbus':
      await modbus(values, rest);
      return 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    const { code, address, port } = error as { code?: string; address?: string; port?: number };
    if (code === 'EADDRINUSE') {
      console.error(`edge-agent: ${address}:${port} is already in use: is another broker or agent running? (--mqtt-port, --api-port or --mqtt-url choose others)`);
      process.exitCode = 2;
      return;
    }
    const known = error instanceof UsageError || error instanceof ConfigError || error instanceof ApiClientError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    console.error(`edge-agent: ${(error as Error).message}`);
    if (error instanceof UsageError) console.error('Run `edge-agent help` for usage.');
    if (!known) console.error((error as Error).stack);
    process.exitCode = known ? 2 : 1;
  },
);
