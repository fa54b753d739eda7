/**
 * Runs inside the VM, with the WiFi testbed: the far side of the APs (network namespace `ap`),
 * where the agent's own traffic goes. One address behind every AP (10.0.9.1), a meta-edge agent
 * listening there, a CloudHub-compatible server on request, and what `ss` shows of the edge's
 * connections to it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { spawnAgent, type AgentProcess } from '../support/agent-process.js';
import { AP_NAMESPACE } from './wifi-testbed.js';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const CLI = join(ROOT, 'dist/src/cli.js');
export const IMAGES = join(ROOT, 'images/build');
/** Reachable through every AP: a local address of the AP namespace. */
export const SERVER = '10.0.9.1';
export const META_PORT = 7443;

const TICK = /unikernel boot=([0-9a-f]{16}) tick=(\d+)/g;
const sh = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8' });
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function lastTick(console: string): { boot: string; tick: number } | undefined {
  const last = [...console.matchAll(TICK)].at(-1);
  return last && { boot: last[1]!, tick: Number(last[2]) };
}

/** The server address behind the APs, and MPTCP limits that take a pooled stream's extra subflows. */
export function openFarSide(): void {
  sh('ip', ['netns', 'exec', AP_NAMESPACE, 'ip', 'addr', 'add', `${SERVER}/32`, 'dev', 'lo']);
  sh('ip', ['netns', 'exec', AP_NAMESPACE, 'ip', 'mptcp', 'limits', 'set', 'subflow', '4', 'add_addr_accepted', '4']);
}

export interface Connection {
  /** Address and port, without ss's `%<interface>` for sockets bound to one. */
  local: string;
  peer: string;
  /** ss's details line (-i): `tcp-ulp-mptcp` marks an MPTCP subflow. */
  info: string;
}

/** The established TCP connections from here to the far side, as `ss -tni` sees them. */
export function connectionsToServer(): Connection[] {
  const connections: Connection[] = [];
  for (const line of sh('ss', ['-tniH', 'state', 'established', 'dst', SERVER]).split('\n')) {
    if (/^\s/.test(line) && connections.length > 0) connections.at(-1)!.info += line.trim();
    else if (line.trim()) {
      const [local, peer] = line.trim().split(/\s+/).slice(-2);
      connections.push({ local: local!.replace(/%[^:]+/, ''), peer: peer!, info: '' });
    }
  }
  return connections;
}

/** The peer identity's fingerprint, made in `dir` for `node` (as `edge-agent workloads identity` does). */
export function peerIdentity(dir: string, node: string): string {
  return sh(process.execPath, [CLI, 'workloads', 'identity', '--data', dir, '--node', node]).trim();
}

export interface Hub {
  token: string;
  httpsPort: number;
  wsPort: number;
  /** One command of cloudhub-process.ts, and its answer. */
  ask(command: string): Promise<Record<string, unknown>>;
  stop(): void;
}

/** The CloudHub-compatible server (cloudhub-process.ts) on the far side. */
export async function startHub(): Promise<Hub> {
  const child = spawn('ip', ['netns', 'exec', AP_NAMESPACE, process.execPath, join(ROOT, 'dist/test/vm/cloudhub-process.js'), SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => answers.shift()?.(line));
  const next = () => new Promise<Record<string, unknown>>((resolve) => answers.push((line) => resolve(JSON.parse(line) as Record<string, unknown>)));
  const ports = (await next()) as { token: string; httpsPort: number; wsPort: number };
  return {
    ...ports,
    ask: (command) => {
      const answer = next();
      child.stdin!.write(`${command}\n`);
      return answer;
    },
    stop: () => child.kill('SIGTERM'),
  };
}

export interface Meta {
  agent: AgentProcess;
  /** A request to its API, which is on the loopback of the AP namespace; the answer's JSON. */
  api(method: string, path: string): Record<string, unknown>;
}

/** The meta-edge agent on the far side, peer of `edge` (fingerprint); it has the images, so nothing is fetched. */
export async function startMeta(dir: string, edgeFingerprint: string): Promise<Meta> {
  mkdirSync(join(dir, 'profiles'), { recursive: true });
  const workloads = { enabled: true, images: [IMAGES], listen: { host: SERVER, port: META_PORT }, peers: [{ name: 'edge', url: 'https://10.0.1.254:7443', fingerprint: edgeFingerprint, trusted: true }] };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ runDir: join(dir, 'run'), workloads }));
  const agent = await spawnAgent(['--config', join(dir, 'agent.json'), '--data', dir, '--profiles', join(dir, 'profiles'), '--node', 'meta'], { netns: AP_NAMESPACE });
  const fetchScript = (method: string, path: string) =>
    `fetch(${JSON.stringify(agent.apiUrl + path)}, { method: '${method}', headers: { authorization: 'Bearer ${agent.token}' } }).then((r) => r.text()).then(console.log)`;
  return { agent, api: (method, path) => JSON.parse(sh('ip', ['netns', 'exec', AP_NAMESPACE, process.execPath, '-e', fetchScript(method, path)])) as Record<string, unknown> };
}

/** The meta-edge as the edge's peer, for its `workloads.peers`. */
export function metaPeer(fingerprint: string): { name: string; url: string; fingerprint: string; trusted: boolean } {
  return { name: 'meta', url: `https://${SERVER}:${META_PORT}`, fingerprint, trusted: true };
}

/** The agent's warnings and errors (pino levels 40 and up) from now on, the newest `keep`. */
export function collectProblems(agent: AgentProcess, keep = 40): string[] {
  const problems: string[] = [];
  createInterface({ input: agent.child.stdout! }).on('line', (line) => {
    if (!/"level":[45]\d/.test(line)) return;
    problems.push(line.slice(0, 600));
    if (problems.length > keep) problems.shift();
  });
  return problems;
}

/** Stops the agents started, last first (SIGTERM), and waits for each to exit. */
export async function stopAgents(agents: AgentProcess[]): Promise<void> {
  for (const agent of [...agents].reverse()) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
}

/** Polls `probe` until it gives something; `status` (a scenario's result) names what is awaited meanwhile. */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false>, status: Record<string, unknown>, intervalMs = 200): Promise<T> {
  status.waitingFor = what;
  for (;;) {
    const value = await probe();
    if (value) {
      status.waitingFor = undefined;
      return value;
    }
    await sleep(intervalMs);
  }
}
