/**
 * migration: the shipped unikernel and a 128 MiB Linux guest live-migrated between two agents on
 * loopback (API → offer over the mutual-TLS peer channel, artifact check, the stream QEMU to QEMU
 * over TLS with the agents' pinned certificates, confirm), downtime and total time as the source
 * QEMU's query-migrate reports them; baseline, same run: the same guests migrated by a plain QMP
 * script between two bare QEMUs over loopback TCP without TLS. The ratios are agent / plain of the
 * medians: `overhead_ratio*` total time, `downtime_ratio_*` downtime. Both sides keep QEMU's
 * default bandwidth cap; the agents aim at their default `migrationDowntimeLimitMs` (50 ms), the
 * plain script at QEMU's default (300 ms), as a script left to QEMU's defaults would.
 */
import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseImageManifest } from '../src/workloads/image.js';
import { CONSOLE_FD, qemuArgs } from '../src/workloads/qemu/args.js';
import { tempDir } from '../test/support/agent.js';
import { freePort } from '../test/support/ports.js';
import { spawnAgent, type AgentProcess } from '../test/support/agent-process.js';
import { median, report, round } from './lib/report.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IMAGES = join(ROOT, 'images/build');
const CLI = join(ROOT, 'dist/src/cli.js');
const ROUNDS = Number(process.env.BENCH_MIGRATION_ROUNDS ?? 3);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Times {
  downtimeMs: number;
  totalTimeMs: number;
}

/** A QMP session the way a script would hold one: JSON lines over the socket, one command at a time. */
async function qmp(path: string) {
  for (let i = 0; ; i++) {
    try {
      const socket = connect(path);
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const lines = createInterface({ input: socket })[Symbol.asyncIterator]();
      const read = async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
      await read();
      const execute = async (command: string, args?: object) => {
        socket.write(`${JSON.stringify({ execute: command, arguments: args })}\n`);
        for (;;) {
          const answer = await read();
          if ('return' in answer || 'error' in answer) return answer.return as Record<string, unknown>;
        }
      };
      await execute('qmp_capabilities');
      return { execute, close: () => socket.destroy() };
    } catch (error) {
      if (i > 200) throw error;
      await sleep(25);
    }
  }
}

/**
 * What each guest prints once it has booted. Both sides migrate a booted guest: under a loaded
 * host a fixed wait can catch the Linux guest mid-boot, and TCG migrations of a kernel that is
 * still running its boot-time self-tests have been seen to leave it panicking at the target.
 */
const READY = { ticker: /tick=\d+/, linux: /linux-service ready/ } as const;
/** After the guest says it is ready: let it settle into its steady state before it moves. */
const SETTLE_MS = 500;
const READY_TIMEOUT_MS = 120_000;

/** A QEMU with the agent's arguments, its console socket (CONSOLE_FD) read as the agent would read it, the tail kept. */
function bareQemu(args: string[]): { child: ChildProcess; console: () => string } {
  // No holes: Node skips them when it reads the array, which would shift the console off its fd.
  const stdio: StdioOptions = Array.from({ length: CONSOLE_FD + 1 }, (_, fd) => (fd === CONSOLE_FD ? 'pipe' : 'ignore'));
  const child = spawn('qemu-system-x86_64', args, { stdio });
  let text = '';
  (child.stdio[CONSOLE_FD] as Readable).on('data', (chunk: Buffer) => (text = (text + chunk.toString('latin1')).slice(-8192)));
  return { child, console: () => text };
}

async function until(what: string, ready: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (!(await ready())) {
    if (performance.now() > deadline) throw new Error(`${what} not ready after ${READY_TIMEOUT_MS} ms`);
    await sleep(100);
  }
  await sleep(SETTLE_MS);
}

/** Two bare QEMUs with the agent's own device set, the target on `-incoming tcp:`. */
async function plainMigration(image: string, ready: RegExp): Promise<Times> {
  const dir = tempDir('bench-plain-');
  const manifest = parseImageManifest(JSON.parse(readFileSync(join(IMAGES, image, 'manifest.json'), 'utf8')), image);
  const artifacts = Object.fromEntries(manifest.artifacts.map((a) => [a.role, join(IMAGES, image, a.file)]));
  const args = (id: string) => qemuArgs({ id, runDir: dir, manifest, artifacts, accel: 'tcg' });
  const port = await freePort();
  const source = bareQemu(args('source'));
  const target = bareQemu([...args('target'), '-incoming', `tcp:127.0.0.1:${port}`]);
  try {
    const [src, dst] = await Promise.all([qmp(join(dir, 'source.qmp')), qmp(join(dir, 'target.qmp'))]);
    await until(`plain ${image}`, () => ready.test(source.console()));
    await src.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    for (;;) {
      const info = await src.execute('query-migrate');
      if (info.status === 'completed') {
        src.close();
        dst.close();
        return { downtimeMs: Number(info.downtime), totalTimeMs: Number(info['total-time']) };
      }
      if (info.status === 'failed') throw new Error(`plain migration failed: ${String(info['error-desc'])}`);
      await sleep(20);
    }
  } finally {
    source.child.kill('SIGKILL');
    target.child.kill('SIGKILL');
  }
}

async function agentPair(): Promise<{ edge: AgentProcess; meta: AgentProcess }> {
  const sides = await Promise.all(
    ['edge', 'meta'].map(async (name) => {
      const data = tempDir(`bench-${name}-`);
      const fingerprint = execFileSync(process.execPath, [CLI, 'workloads', 'identity', '--data', data, '--node', name], { encoding: 'utf8' }).trim();
      return { name, data, fingerprint, port: await freePort() };
    }),
  );
  const [edge, meta] = sides as [(typeof sides)[0], (typeof sides)[0]];
  const start = (self: typeof edge, peer: typeof edge, extra: object) => {
    const config = join(self.data, 'agent.json');
    const workloads = { enabled: true, listen: { host: '127.0.0.1', port: self.port }, peers: [{ name: peer.name, url: `https://127.0.0.1:${peer.port}`, fingerprint: peer.fingerprint }], ...extra };
    writeFileSync(config, JSON.stringify({ workloads, runDir: join(self.data, 'run') }));
    return spawnAgent(['--config', config, '--data', self.data, '--profiles', tempDir(), '--node', self.name]);
  };
  const definitions = [
    { name: 'ticker', image: 'unikernel-ticker' },
    { name: 'linux', image: 'linux-service' },
  ];
  return { edge: await start(edge, meta, { images: [IMAGES], workloads: definitions }), meta: await start(meta, edge, { images: [IMAGES], workloads: definitions }) };
}

async function call<T>(agent: AgentProcess, method: string, path: string, body?: unknown): Promise<T> {
  const response = await agent.api(`/api/v1/workloads${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = (await response.json()) as T & { reason?: string };
  if (!response.ok) throw new Error(`${method} ${path}: ${json.reason}`);
  return json;
}

async function agentMigration(edge: AgentProcess, meta: AgentProcess, name: string, ready: RegExp): Promise<Times> {
  await call(edge, 'POST', '', { name });
  await until(`agent ${name}`, async () => ready.test((await call<{ console: string }>(edge, 'GET', `/${name}`)).console));
  const out = await call<Times>(edge, 'POST', `/${name}/migrate`, { peer: 'meta' });
  // Home again for the next round.
  await call(edge, 'POST', `/${name}/return`);
  await call(edge, 'DELETE', `/${name}`);
  return out;
}

export async function migration(): Promise<void> {
  const { edge, meta } = await agentPair();
  const results: Record<string, { agent: Times[]; plain: Times[] }> = { ticker: { agent: [], plain: [] }, linux: { agent: [], plain: [] } };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, image] of [['ticker', 'unikernel-ticker'], ['linux', 'linux-service']] as const) {
        results[name]!.plain.push(await plainMigration(image, READY[name]));
        results[name]!.agent.push(await agentMigration(edge, meta, name, READY[name]));
      }
    }
  } finally {
    for (const agent of [edge, meta]) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
  }
  const m = (name: string, side: 'agent' | 'plain', key: keyof Times) => median(results[name]![side].map((t) => t[key]));
  report('migration', {
    downtime_ms_unikernel: round(m('ticker', 'agent', 'downtimeMs'), 0),
    total_ms_unikernel: round(m('ticker', 'agent', 'totalTimeMs'), 0),
    downtime_ms_linux: round(m('linux', 'agent', 'downtimeMs'), 0),
    total_ms_linux: round(m('linux', 'agent', 'totalTimeMs'), 0),
    plain_downtime_ms_unikernel: round(m('ticker', 'plain', 'downtimeMs'), 0),
    plain_total_ms_unikernel: round(m('ticker', 'plain', 'totalTimeMs'), 0),
    plain_downtime_ms_linux: round(m('linux', 'plain', 'downtimeMs'), 0),
    plain_total_ms_linux: round(m('linux', 'plain', 'totalTimeMs'), 0),
    overhead_ratio: round(m('linux', 'agent', 'totalTimeMs') / m('linux', 'plain', 'totalTimeMs'), 2),
    overhead_ratio_unikernel: round(m('ticker', 'agent', 'totalTimeMs') / m('ticker', 'plain', 'totalTimeMs'), 2),
    // QEMU reports whole milliseconds: a 1 ms plain downtime (the unikernel) makes 2 ms read as 2x.
    downtime_ratio_linux: round(m('linux', 'agent', 'downtimeMs') / Math.max(m('linux', 'plain', 'downtimeMs'), 1), 2),
    downtime_ratio_unikernel: round(m('ticker', 'agent', 'downtimeMs') / Math.max(m('ticker', 'plain', 'downtimeMs'), 1), 2),
    rounds: ROUNDS,
  });
}
