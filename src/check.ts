/**
 * `edge-agent check`: a self-diagnosis before (or beside) a running agent, one line per check:
 * config, data dir, ports, the serial devices the profiles name, the radios and QEMU/KVM when
 * their features are enabled, the cloud when it is. A check that cannot pass makes the command
 * exit non-zero; a warning does not (the agent runs, with less).
 */
import { constants, existsSync, readdirSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import type { Config } from './config.js';
import { loadCatalog, type Catalog } from './devices/load.js';
import { tryConnect } from './connects.js';

export type Outcome = 'ok' | 'warn' | 'fail' | 'skip';
export interface CheckResult {
  outcome: Outcome;
  name: string;
  detail: string;
}

const PROBE_TIMEOUT_MS = 3000;

const result = (outcome: Outcome, name: string, detail: string): CheckResult => ({ outcome, name, detail });

/** The closest existing directory: the agent creates the data dir, so its parent must let it. */
function existingAncestor(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

async function writable(name: string, path: string): Promise<CheckResult> {
  const dir = existingAncestor(path);
  try {
    await access(dir, constants.W_OK | constants.X_OK);
    return result('ok', name, dir === path ? `${path} writable` : `${path} absent; ${dir} lets the agent create it`);
  } catch (error) {
    return result('fail', name, `${dir} is not writable by uid ${process.getuid?.()} (${(error as NodeJS.ErrnoException).code})`);
  }
}

/** Binds and frees the port; a port in use by the agent itself (it answers /healthz there) is fine. */
async function portFree(name: string, host: string, port: number, agentRunning: boolean): Promise<CheckResult> {
  if (port === 0) return result('ok', name, 'port 0: the system picks one');
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    return result('ok', name, `${host}:${port} free`);
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code === 'EADDRINUSE' && agentRunning) return result('ok', name, `${host}:${port} in use by the running agent`);
    return result('fail', name, `${host}:${port} cannot be bound (${code})${code === 'EACCES' ? ': ports below 1024 need CAP_NET_BIND_SERVICE' : ''}`);
  } finally {
    server.close();
  }
}

async function agentAnswers(config: Config): Promise<boolean> {
  try {
    const response = await fetch(`http://${config.api.host}:${config.api.port}/healthz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    return response.ok;
  } catch {
    return false;
  }
}

function collectDevicePaths(value: unknown, into: Set<string>): void {
  if (typeof value === 'string' && value.startsWith('/dev/')) into.add(value);
  else if (value && typeof value === 'object') for (const inner of Object.values(value)) collectDevicePaths(inner, into);
}

/** Profiles load without errors, and every /dev path they name (serial lines) is there for this user. */
async function profiles(config: Config, catalog: Catalog): Promise<CheckResult[]> {
  const results = [
    catalog.errors.length === 0
      ? result('ok', 'profiles', `${catalog.devices.size} devices, ${catalog.models.size} models from ${config.profiles.join(', ')}`)
      : result('fail', 'profiles', `${catalog.errors.length} errors in ${config.profiles.join(', ')} (edge-agent validate shows them)`),
  ];
  const paths = new Set<string>();
  for (const device of catalog.devices.values()) collectDevicePaths(device.protocol, paths);
  for (const path of paths) {
    try {
      await access(path, constants.R_OK | constants.W_OK);
      results.push(result('ok', 'serial', `${path} present and usable`));
    } catch (error) {
      const { code } = error as NodeJS.ErrnoException;
      results.push(result('fail', 'serial', `${path}: ${code === 'ENOENT' ? 'absent' : `${code}: the agent's user needs the dialout group`}`));
    }
  }
  return results;
}

function loads(module: string): string | undefined {
  try {
    createRequire(import.meta.url)(module);
    return undefined;
  } catch (error) {
    return (error as Error).message.split('\n', 1)[0];
  }
}

function bluetooth(uses: boolean): CheckResult {
  if (!uses) return result('skip', 'bluetooth', 'no BLE device in the profiles');
  const controllers = existsSync('/sys/class/bluetooth') ? readdirSync('/sys/class/bluetooth') : [];
  if (controllers.length === 0) return result('fail', 'bluetooth', 'BLE devices are configured, but this machine has no Bluetooth controller (/sys/class/bluetooth)');
  const missing = loads('@abandonware/bluetooth-hci-socket');
  if (missing) return result('fail', 'bluetooth', `controllers ${controllers.join(', ')}, but the HCI socket module does not load: ${missing}`);
  return result('ok', 'bluetooth', `controllers ${controllers.join(', ')}`);
}

function wifi(config: Config): CheckResult {
  if (!config.wifi.enabled) return result('skip', 'wifi', 'wifi.enabled is false');
  const radio = config.wifi.radio;
  const present = existsSync(`/sys/class/ieee80211/${radio}`) || existsSync(`/sys/class/net/${radio}/phy80211`);
  if (!present) return result('fail', 'wifi', `radio ${radio} not found (/sys/class/ieee80211, /sys/class/net)`);
  const missing = config.wifi.backend === 'networkmanager' ? undefined : loads('node-unix-socket');
  if (missing) return result('warn', 'wifi', `radio ${radio} present; the wpa_supplicant backend is unavailable here (${missing}): only networkmanager works`);
  return result('ok', 'wifi', `radio ${radio} present`);
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(`${dir}/${command}`)) return `${dir}/${command}`;
  return undefined;
}

async function qemu(config: Config): Promise<CheckResult[]> {
  if (!config.workloads.enabled) return [result('skip', 'qemu', 'workloads.enabled is false')];
  const binary = { x64: 'qemu-system-x86_64', arm64: 'qemu-system-aarch64', arm: 'qemu-system-arm' }[process.arch as string] ?? `qemu-system-${process.arch}`;
  const found = onPath(binary);
  const kvm = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => result('ok', 'kvm', '/dev/kvm usable: workloads run accelerated'),
    (error: NodeJS.ErrnoException) => result('warn', 'kvm', `/dev/kvm ${error.code === 'ENOENT' ? 'absent' : `not usable (${error.code}; the kvm group gives it)`}: workloads run emulated (TCG), slower`),
  );
  return [found ? result('ok', 'qemu', found) : result('fail', 'qemu', `${binary} not found on PATH: workloads cannot start`), kvm];
}

async function cloud(config: Config): Promise<CheckResult> {
  if (!config.cloud.enabled || config.cloud.server === undefined) return result('skip', 'cloud', 'cloud.enabled is false');
  const { server, websocketPort } = config.cloud;
  const error = await tryConnect({ host: server, port: websocketPort }, PROBE_TIMEOUT_MS);
  return error ? result('fail', 'cloud', `${server}:${websocketPort} unreachable: ${error.message}`) : result('ok', 'cloud', `${server}:${websocketPort} reachable`);
}

/** Runs every check on a config that parsed; the caller reports a config that did not. */
export async function runChecks(config: Config): Promise<CheckResult[]> {
  const running = await agentAnswers(config);
  const catalog = loadCatalog(config.profiles);
  const usesBle = [...catalog.devices.values()].some((d) => d.protocol.name === 'bluetooth');
  return [
    await writable('data dir', config.dataDir),
    ...(config.mqtt.url ? [result('skip', 'mqtt port', `external broker ${new URL(config.mqtt.url).host}`)] : [await portFree('mqtt port', config.mqtt.host, config.mqtt.port, running)]),
    await portFree('api port', config.api.host, config.api.port, running),
    ...(await profiles(config, catalog)),
    bluetooth(usesBle),
    wifi(config),
    ...(await qemu(config)),
    await cloud(config),
  ];
}

/** `ok    data dir: /var/lib/edge-agent writable` */
export function formatCheck({ outcome, name, detail }: CheckResult): string {
  return `${outcome.padEnd(5)} ${name}: ${detail}`;
}
