/**
 * The CLI's client commands against a running agent: `edge-agent start` as a child process
 * (spawnAgent), and `node dist/src/cli.js …` as another, finding the API token itself (in the
 * agent's data dir) or given it. Needs `npx tsc -p tsconfig.json`.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, spawnAgent, tempDir, TEST_PROFILES, type AgentProcess } from './support/agent.js';
import { freePort } from './support/ports.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli.js ...args` to completion, with `env` added to the environment; never rejects on a non-zero exit. */
function cliWith(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
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

const cli = (...args: string[]) => cliWith({}, ...args);

describe('edge-agent CLI client commands', () => {
  let agent: AgentProcess;
  let api: string;
  /** The agent and its data dir, where the CLI reads the token. */
  let client: string[];
  const dataDir = tempDir();
  const socket = join(dataDir, 'api.sock');

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
    agent = await spawnAgent(['--profiles', TEST_PROFILES, '--data', dataDir], { EDGE_AGENT_API__SOCKET: socket });
    api = agent.apiUrl;
    client = ['--api', api, '--data', dataDir];
  });

  afterAll(async () => {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('devices lists every device with its state and who serves it', async () => {
    const { code, stdout, stderr } = await cli('devices', ...client);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^DEVICE\s+STATE\s+SERVED BY\s+PROPERTIES\s+LAST ONLINE\s+REASON$/);
    expect(stdout).toMatch(/^default\/sensor-01\s+unhealthy\s+nobody\s+4\s+-\s+no mapper for protocol "[\w-]+"$/m);
    expect(stdout).toMatch(/^plant-a\/sensor-02\s+unhealthy\s+nobody\s+1\s+-\s+no mapper for protocol "[\w-]+"$/m);
    expect(stdout).toMatch(/^default\/remote-01\s+unknown\s+other node\s+4\s+-$/m);
    expect(lines).toHaveLength(4);
  });

  it('devices --json prints the API list', async () => {
    const { code, stdout } = await cli('devices', ...client, '--json');
    expect(code).toBe(0);
    const devices = JSON.parse(stdout) as Array<{ id: string }>;
    expect(devices.map((d) => d.id).sort()).toEqual(['default/remote-01', 'default/sensor-01', 'plant-a/sensor-02']);
  });

  it('twin get shows the properties with their types, desired and reported values', async () => {
    const { code, stdout, stderr } = await cli('twin', 'get', 'default/sensor-01', ...client);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^PROPERTY\s+TYPE\s+DESIRED\s+REPORTED\s+REPORTED AT$/m);
    expect(stdout).toMatch(/^temperature\s+float\s+-\s+-\s+-$/m);
    expect(stdout).toMatch(/^count\s+int\s+-\s+-\s+-$/m);
    expect(stdout).toMatch(/^switch\s+string\s+OFF\s+-\s+-$/m);
    expect(stdout).toMatch(/^enabled\s+boolean\s+-\s+-\s+-$/m);
  });

  it('twin set sets a desired value, which twin get then shows', async () => {
    const set = await cli('twin', 'set', 'default/sensor-01', 'switch', 'ON', ...client);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout.trim()).toBe('desired switch=ON set on default/sensor-01');

    const get = await cli('twin', 'get', 'default/sensor-01', ...client);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/^switch\s+string\s+ON\s+-\s+-$/m);

    const json = await cli('twin', 'get', 'default/sensor-01', ...client, '--json');
    const twin = JSON.parse(json.stdout) as Record<string, { expected?: { value: string } }>;
    expect(twin.switch?.expected?.value).toBe('ON');
  });

  it('twin set of a value the twin type refuses fails with the reason', async () => {
    const { code, stderr } = await cli('twin', 'set', 'default/sensor-01', 'count', 'abc', ...client);
    expect(code).toBe(2);
    expect(stderr).toContain('400: the value is not int or integer');
  });

  it('an unknown device gives 404 and exit 2', async () => {
    const { code, stdout, stderr } = await cli('twin', 'get', 'default/no-such-device', ...client);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('404: device default/no-such-device not found');
  });

  it.each([['sensor-01'], ['default/sensor-01/extra'], ['/sensor-01']])('a bad NS/NAME (%s) exits 2 with a clear message', async (ref) => {
    const { code, stdout, stderr } = await cli('twin', 'get', ref, ...client);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(`edge-agent: expected NS/NAME, got ${JSON.stringify(ref)}`);
    expect(stderr).toContain('Run `edge-agent help` for usage.');
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('twin get without NS/NAME exits 2', async () => {
    const { code, stderr } = await cli('twin', 'get', ...client);
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

  describe('the API token', () => {
    const listsDevices = ({ code, stdout, stderr }: CliResult) => {
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toMatch(/^default\/sensor-01\s/m);
    };

    it('needs no flag on the gateway: address and data dir come from the configuration the agent runs with', async () => {
      listsDevices(await cliWith({ EDGE_AGENT_API__PORT: new URL(api).port, EDGE_AGENT_DATA_DIR: dataDir }, 'devices'));
    });

    it('is taken from --token, or from EDGE_AGENT_TOKEN (which is no config key), instead', async () => {
      listsDevices(await cli('devices', '--api', api, '--token', agent.token));
      listsDevices(await cliWith({ EDGE_AGENT_TOKEN: `${agent.token}\n`, EDGE_AGENT_API__PORT: new URL(api).port }, 'devices'));
    });

    it('a wrong one fails with 403, saying where it came from', async () => {
      const { code, stderr } = await cli('devices', '--api', api, '--token', 'f'.repeat(64));
      expect(code).toBe(2);
      expect(stderr.trim()).toBe('edge-agent: 403: wrong API token (token from --token)');
    });

    it('none found fails with 401, saying where the CLI looked', async () => {
      const elsewhere = join(dataDir, 'elsewhere');
      const { code, stderr } = await cli('devices', '--api', api, '--data', elsewhere);
      expect(code).toBe(2);
      expect(stderr.trim()).toBe(
        `edge-agent: 401: missing Authorization: Bearer <token>; the token is in api-token in the agent's data dir (no token: cannot read ${join(elsewhere, 'api-token')} (ENOENT); --token, EDGE_AGENT_TOKEN or --data DIR give one)`,
      );
    });

    it('goes through the unix socket too (--api unix:PATH)', async () => {
      listsDevices(await cli('devices', '--api', `unix:${socket}`, '--data', dataDir));
    });
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
