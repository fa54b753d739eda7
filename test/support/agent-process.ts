/** Runs `edge-agent start` as a child process and waits for its "agent ready" log line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readApiToken } from '../../src/api/token.js';
import { authorizedFetch, type ApiFetch } from './api.js';

/** The compiled CLI, beside this file's compiled form in dist/. */
const COMPILED_CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

/** The Node.js flags the launcher (bin/edge-agent, two folders above dist/src/cli.js) gives the agent, so runs here match real ones. */
export function agentNodeFlags(cli = COMPILED_CLI): string[] {
  const launcher = readFileSync(resolve(dirname(cli), '../../bin/edge-agent'), 'utf8');
  const flags = /^NODE_FLAGS="([^"]*)"$/m.exec(launcher);
  if (!flags) throw new Error('bin/edge-agent has no NODE_FLAGS="…" line');
  return flags[1]!.split(/\s+/).filter(Boolean);
}

export interface AgentProcess {
  child: ChildProcess;
  mqttUrl: string;
  apiUrl: string;
  /** The API token, read from the file the agent names in its "agent ready" line. */
  token: string;
  /** `fetch` on the API with the token: `api('/api/v1/devices')`. */
  api: ApiFetch;
  /** Milliseconds from spawn to the "agent ready" line. */
  readyAfterMs: number;
  /** Resolves with the exit code, or the signal that ended the process. */
  exited: Promise<number | string>;
}

export function spawnAgent(args: string[], options: { env?: NodeJS.ProcessEnv; cli?: string; netns?: string } = {}): Promise<AgentProcess> {
  const started = performance.now();
  const cli = options.cli ?? COMPILED_CLI;
  // Each agent its own DMI socket unless the test names one: as root the default is EdgeCore's one /etc/kubeedge/dmi.sock.
  const dmiSocket = { EDGE_AGENT_DMI__SOCKET: join(mkdtempSync(join(tmpdir(), 'edge-agent-dmi-')), 'dmi.sock') };
  const command = [process.execPath, ...agentNodeFlags(cli), cli, 'start', '--mqtt-port', '0', '--api-port', '0', ...args];
  // In another network namespace (a VM scenario's far side): its API is reachable only from there.
  const [file, ...rest] = options.netns ? ['ip', 'netns', 'exec', options.netns, ...command] : command;
  const child = spawn(file!, rest, {
    env: { ...process.env, ...dmiSocket, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.includes('"agent ready"')) return;
      const ready = JSON.parse(line) as { mqtt: string; api: string; apiTokenFile: string };
      const token = readApiToken(ready.apiTokenFile);
      resolve({ child, mqttUrl: ready.mqtt, apiUrl: ready.api, token, api: authorizedFetch(ready.api, token), readyAfterMs: performance.now() - started, exited });
    });
    void exited.then((code) => reject(new Error(`agent exited (${code}) before it was ready: ${stderr}`)));
  });
}
