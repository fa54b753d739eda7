/**
 * The CLI's client commands against a running agent: `edge-agent start` as a child process
 * (spawnAgent), and `node dist/src/cli.js …` as another. Needs `npx tsc -p tsconfig.json`.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from './support/agent.js';
import { freePort } from './support/ports.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli.js ...args` to completion; never rejects on a non-zero exit. */
function cli(...args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cli ${args.join(' ')} did not finish in 20 s: ${stdout}${stderr}`));
    }, 20_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('edge-agent CLI client commands', () => {
  let agent: AgentProcess;
  let api: string;
  const dataDir = tempDir();

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
    agent = await spawnAgent(['--profiles', TEST_PROFILES, '--data', dataDir]);
    api = agent.apiUrl;
  });

  afterAll(async () => {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('devices lists every device with its state and node binding', async () => {
    const { code, stdout, stderr } = await cli('devices', '--api', api);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^DEVICE\s+STATE\s+MANAGED\s+PROPERTIES\s+LAST ONLINE\s+REASON$/);
    expect(stdout).toMatch(/^default\/sensor-01\s+unhealthy\s+yes\s+4\s+-\s+no mapper for protocol "[\w-]+"$/m);
    expect(stdout).toMatch(/^plant-a\/sensor-02\s+unhealthy\s+yes\s+1\s+-\s+no mapper for protocol "[\w-]+"$/m);
    expect(stdout).toMatch(/^default\/remote-01\s+unknown\s+no \(other node\)\s+4\s+-$/m);
    expect(lines).toHaveLength(4);
  });

  it('devices --json prints the API list', async () => {
    const { code, stdout } = await cli('devices', '--api', api, '--json');
    expect(code).toBe(0);
    const devices = JSON.parse(stdout) as Array<{ id: string }>;
    expect(devices.map((d) => d.id).sort()).toEqual(['default/remote-01', 'default/sensor-01', 'plant-a/sensor-02']);
  });

  it('twin get shows the properties with their types, desired and reported values', async () => {
    const { code, stdout, stderr } = await cli('twin', 'get', 'default/sensor-01', '--api', api);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^PROPERTY\s+TYPE\s+DESIRED\s+REPORTED\s+REPORTED AT$/m);
    expect(stdout).toMatch(/^temperature\s+float\s+-\s+-\s+-$/m);
    expect(stdout).toMatch(/^count\s+int\s+-\s+-\s+-$/m);
    expect(stdout).toMatch(/^switch\s+string\s+OFF\s+-\s+-$/m);
    expect(stdout).toMatch(/^enabled\s+boolean\s+-\s+-\s+-$/m);
  });

  it('twin set sets a desired value, which twin get then shows', async () => {
    const set = await cli('twin', 'set', 'default/sensor-01', 'switch', 'ON', '--api', api);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout.trim()).toBe('desired switch=ON set on default/sensor-01');

    const get = await cli('twin', 'get', 'default/sensor-01', '--api', api);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/^switch\s+string\s+ON\s+-\s+-$/m);

    const json = await cli('twin', 'get', 'default/sensor-01', '--api', api, '--json');
    const twin = JSON.parse(json.stdout) as Record<string, { expected?: { value: string } }>;
    expect(twin.switch?.expected?.value).toBe('ON');
  });

  it('twin set of a value the twin type refuses fails with the reason', async () => {
    const { code, stderr } = await cli('twin', 'set', 'default/sensor-01', 'count', 'abc', '--api', api);
    expect(code).toBe(2);
    expect(stderr).toContain('400: the value is not int or integer');
  });

  it('an unknown device gives 404 and exit 2', async () => {
    const { code, stdout, stderr } = await cli('twin', 'get', 'default/no-such-device', '--api', api);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('404: device default/no-such-device not found');
  });

  it.each([['sensor-01'], ['default/sensor-01/extra'], ['/sensor-01']])('a bad NS/NAME (%s) exits 2 with a clear message', async (ref) => {
    const { code, stdout, stderr } = await cli('twin', 'get', ref, '--api', api);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(`edge-agent: expected NS/NAME, got ${JSON.stringify(ref)}`);
    expect(stderr).toContain('Run `edge-agent help` for usage.');
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('twin get without NS/NAME exits 2', async () => {
    const { code, stderr } = await cli('twin', 'get', '--api', api);
    expect(code).toBe(2);
    expect(stderr).toContain('expected NS/NAME, got ""');
  });

  it('an unreachable --api gives a clear error', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { code, stdout, stderr } = await cli('devices', '--api', url);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trim()).toBe(`edge-agent: cannot reach the agent at ${url} (ECONNREFUSED): is it running? (--api URL picks another)`);
  });

  it('help prints the usage', async () => {
    for (const args of [['help'], ['--help'], []]) {
      const { code, stdout, stderr } = await cli(...args);
      expect(code).toBe(0);
      expect(stderr).toBe('');
      expect(stdout).toMatch(/^Usage: edge-agent <command> \[options\]/);
      for (const command of ['start', 'validate PATH...', 'devices', 'twin get NS/NAME', 'twin set NS/NAME PROPERTY VALUE']) expect(stdout).toContain(command);
    }
  });

  it('an unknown command exits 2', async () => {
    const { code, stderr } = await cli('frobnicate');
    expect(code).toBe(2);
    expect(stderr).toContain('unknown command "frobnicate"');
  });
});
