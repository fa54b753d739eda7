/**
 * `edge-agent --version` and `edge-agent check`, run as a user would: through the launcher
 * bin/edge-agent under dash and under BusyBox sh (no `env -S` anywhere), on the compiled CLI.
 * `check` runs on temporary configs and real ports. Needs `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../support/agent.js';

const LAUNCHER = join(ROOT, 'bin/edge-agent');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function edgeAgent(args: string[], shell = 'sh') {
  // The launcher finds `node` on PATH in a checkout: this test's own.
  const env = { ...process.env, PATH: `${join(process.execPath, '..')}:${process.env.PATH}` };
  return spawnSync(shell === 'busybox' ? 'busybox' : shell, shell === 'busybox' ? ['sh', LAUNCHER, ...args] : [LAUNCHER, ...args], { encoding: 'utf8', env, timeout: 20_000 });
}

function config(dir: string, yaml: string): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return file;
}

describe('edge-agent --version', () => {
  it('prints the package version, the Node.js version and the platform', () => {
    const { status, stdout } = edgeAgent(['--version']);
    expect(status).toBe(0);
    expect(stdout.trim()).toBe(`edge-agent ${VERSION} (Node.js ${process.version}, ${process.platform}-${process.arch})`);
  });

  it.runIf(existsSync('/usr/bin/busybox') || existsSync('/bin/busybox'))('starts under BusyBox sh too', () => {
    const { status, stdout } = edgeAgent(['--version'], 'busybox');
    expect(status).toBe(0);
    expect(stdout).toContain(`edge-agent ${VERSION}`);
  });
});

describe('edge-agent check', () => {
  const dir = tempDir();
  let taken: Server;
  let takenPort: number;
  beforeAll(async () => {
    taken = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => taken.once('listening', resolve));
    takenPort = (taken.address() as { port: number }).port;
  });
  afterAll(() => taken.close());

  it('passes with one line per check on a sound config', () => {
    const file = config(dir, `dataDir: ${join(dir, 'data')}\nprofiles: [${join(ROOT, 'device-profiles/demo')}]\nmqtt: {port: 0}\napi: {port: 0}\n`);
    const { status, stdout } = edgeAgent(['check', '--config', file]);
    expect(stdout).toMatch(/^ok {4}config: .* valid/m);
    expect(stdout).toMatch(/^ok {4}data dir: .*data absent; .* lets the agent create it$/m);
    expect(stdout).toMatch(/^ok {4}profiles: 4 devices, 4 models/m);
    expect(stdout).toMatch(/^skip {2}cloud: cloud.enabled is false$/m);
    expect(status).toBe(0);
  });

  it('fails, naming the port, when the broker port is taken', () => {
    const file = config(dir, `dataDir: ${join(dir, 'data')}\nprofiles: []\nmqtt: {port: ${takenPort}}\napi: {port: 0}\n`);
    const { status, stdout } = edgeAgent(['check', '--config', file]);
    expect(stdout).toMatch(new RegExp(`^fail  mqtt port: 127\\.0\\.0\\.1:${takenPort} cannot be bound \\(EADDRINUSE\\)$`, 'm'));
    expect(status).toBe(1);
  });

  it('fails on an invalid config, and on a serial device that is not there', () => {
    const bad = edgeAgent(['check', '--config', config(dir, 'mqtt: {port: "x"}\n')]);
    expect(bad.stdout).toMatch(/^fail  config: .*mqtt\.port/m);
    expect(bad.status).toBe(1);
    const serial = edgeAgent(['check', '--config', config(dir, `dataDir: ${join(dir, 'data')}\nprofiles: [${join(ROOT, 'device-profiles/modbus')}]\nmqtt: {port: 0}\napi: {port: 0}\n`)]);
    expect(serial.stdout).toMatch(/^fail  serial: \/dev\/\S+: absent$/m);
    expect(serial.status).toBe(1);
  });
});
