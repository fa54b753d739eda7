/** Runs `edge-agent start` as a child process and waits for its "agent ready" log line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readApiToken } from '../../src/api/token.js';
import { authorizedFetch, type ApiFetch } from './api.js';

/** The compiled CLI, beside this file's compiled form in dist/. */
const COMPILED_CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

/** The Node.js flags the CLI's `#!/usr/bin/env -S node …` line gives the agent, so runs here match real ones. */
export function agentNodeFlags(cli = COMPILED_CLI): string[] {
  const shebang = readFileSync(cli, 'utf8').split('\n', 1)[0]!;
  return shebang.split(/\s+/).filter((word) => word.startsWith('--'));
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

export function spawnAgent(args: string[], options: { env?: NodeJS.ProcessEnv; cli?: string } = {}): Promise<AgentProcess> {
  const started = performance.now();
  const cli = options.cli ?? COMPILED_CLI;
  const child = spawn(process.execPath, [...agentNodeFlags(cli), cli, 'start', '--mqtt-port', '0', '--api-port', '0', ...args], {
    env: { ...process.env, ...options.env },
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
