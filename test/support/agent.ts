/** Starting agents for tests: in-process (for protocol tests) or as a child process (for kill -9). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnAgent as spawnAgentProcess, type AgentProcess } from './agent-process.js';
import { authorizedFetch, type ApiFetch } from './api.js';
import { startAgent, type Agent } from '../../src/agent.js';
import { apiTokenFile, readApiToken } from '../../src/api/token.js';
import { merge, resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const TEST_PROFILES = join(ROOT, 'test/fixtures/profiles');
export const DEMO_PROFILES = join(ROOT, 'device-profiles/demo');
export const CLI = join(ROOT, 'dist/src/cli.js');
export const NODE_NAME = 'test-node';
export type { AgentProcess };

export function tempDir(prefix = 'edge-agent-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestAgent {
  agent: Agent;
  mqttUrl: string;
  apiUrl: string;
  /** The API token the agent made in its data dir. */
  token: string;
  /** `fetch` on the API with the token: `api('/api/v1/devices')`. */
  api: ApiFetch;
  dataDir: string;
  stop(): Promise<void>;
}

export interface TestAgentOptions {
  profiles?: string[];
  dataDir?: string;
  mqttUrl?: string;
  maxPayloadBytes?: number;
  /** Config laid over the test's own (merged section by section), as a config file would be. */
  config?: Record<string, unknown>;
}

export async function startTestAgent(options: TestAgentOptions = {}): Promise<TestAgent> {
  const dataDir = options.dataDir ?? tempDir();
  const flags = {
    node: NODE_NAME,
    dataDir,
    profiles: options.profiles ?? [TEST_PROFILES],
    mqtt: { port: 0, url: options.mqttUrl, ...(options.maxPayloadBytes ? { maxPayloadBytes: options.maxPayloadBytes } : {}) },
    api: { port: 0 },
    // Each agent its own DMI socket: as root the default is EdgeCore's one /etc/kubeedge/dmi.sock.
    dmi: { socket: join(dataDir, 'dmi.sock') },
    log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' },
  };
  const config = resolveConfig({ flags: merge(flags, options.config ?? {}) });
  const agent = await startAgent(config, createLogger(config.log.level));
  const apiUrl = `http://127.0.0.1:${agent.apiPort}`;
  const token = readApiToken(apiTokenFile(config.dataDir));
  return {
    agent,
    mqttUrl: agent.bus.url,
    apiUrl,
    token,
    api: authorizedFetch(apiUrl, token),
    dataDir,
    async stop() {
      await agent.stop();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Spawns `edge-agent start` for this test node and resolves once it logs "agent ready". */
export function spawnAgent(args: string[], env: NodeJS.ProcessEnv = {}): Promise<AgentProcess> {
  return spawnAgentProcess(['--node', NODE_NAME, ...args], { env, cli: CLI });
}
