/** Runs the mapper-framework-like DMI mapper of test/fixtures/dmi/mapper.mjs and collects what it prints. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ROOT } from './agent.js';
import { waitFor } from './wait.js';

export interface MapperEvent {
  event: string;
  method?: string;
  [key: string]: unknown;
}

export interface TestMapper {
  child: ChildProcess;
  events: MapperEvent[];
  /** The first event from index `from` on that `match` accepts. */
  next(what: string, match: (event: MapperEvent) => boolean, from?: number, timeoutMs?: number): Promise<MapperEvent>;
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function startTestMapper(options: { agentSocket: string; socket: string; protocol: string; name?: string; reportMs?: number }): TestMapper {
  const args = ['--edgecore-sock', options.agentSocket, '--socket', options.socket, '--protocol', options.protocol, '--name', options.name ?? 'test-mapper', '--report-ms', String(options.reportMs ?? 200)];
  const child = spawn(process.execPath, [`${ROOT}test/fixtures/dmi/mapper.mjs`, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: MapperEvent[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => events.push(JSON.parse(line) as MapperEvent));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    events,
    exited,
    next: (what, match, from = 0, timeoutMs = 10_000) => waitFor(what, () => events.slice(from).find(match), { timeoutMs, intervalMs: 20 }),
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
