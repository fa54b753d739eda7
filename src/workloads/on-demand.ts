/**
 * Workloads summoned by their first connection, the way Jitsu summons unikernels: the agent
 * listens on the workload's published port; a connection while the workload is down starts it
 * (from the snapshot its last idle stop left, else a cold boot), is held meanwhile, and is
 * passed through once the guest accepts, so the client sees a slower first byte, not a refused
 * connection. With no connection for `idleTimeoutMs` the workload is snapshotted and stopped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { WorkloadDefinition } from './config.js';
import type { WorkloadManager } from './manager.js';
import { splice } from './splice.js';
import { listening } from '../listen.js';

const READY_TIMEOUT_MS = 60_000;
/** QEMU's user network accepts a forwarded connection and drops it at once while nothing listens in the guest. */
const ACCEPTED_AFTER_MS = 150;

export interface OnDemandStats {
  starts: number;
  resumes: number;
  lastStartMs?: number;
  connections: number;
}

/** An on-demand workload as the API shows it. */
export interface OnDemandState extends OnDemandStats {
  name: string;
  port: number;
  /** Whether its next start resumes from a snapshot. */
  snapshot: boolean;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether the guest accepted: a forwarded connection that stays open. */
function guestAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(port, '127.0.0.1');
    let timer: NodeJS.Timeout | undefined;
    const done = (accepted: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(accepted);
    };
    probe.once('connect', () => (timer = setTimeout(() => done(true), ACCEPTED_AFTER_MS)));
    probe.once('close', () => done(false));
    probe.once('error', () => done(false));
  });
}

export class OnDemandWorkload {
  private server?: Server;
  private internalPort = 0;
  private starting?: Promise<void>;
  private readonly active = new Set<Socket>();
  private idleTimer?: NodeJS.Timeout;
  /** Set by `stop`: the connections it cuts must not arm the idle timer again. */
  private stopped = false;
  private readonly stats: OnDemandStats = { starts: 0, resumes: 0, connections: 0 };
  private readonly snapshot: string;

  constructor(
    private readonly definition: WorkloadDefinition & { onDemand: NonNullable<WorkloadDefinition['onDemand']> },
    private readonly manager: WorkloadManager,
    private readonly log: Logger,
  ) {
    this.snapshot = manager.runPath(`${definition.name}.snapshot`);
  }

  get port(): number {
    return this.definition.ports[0]!.host;
  }

  state(): OnDemandState {
    return { name: this.definition.name, ...this.stats, port: this.port, snapshot: existsSync(this.snapshot) };
  }

  async start(): Promise<void> {
    this.internalPort = await freePort();
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await listening(server, (done) => server.listen(this.port, '127.0.0.1', done));
    this.log.info({ workload: this.definition.name, port: this.port }, 'on-demand workload listening');
  }

  private accept(client: Socket): void {
    this.stats.connections++;
    this.active.add(client);
    clearTimeout(this.idleTimer);
    client.pause();
    client.once('close', () => {
      this.active.delete(client);
      if (this.active.size > 0 || this.stopped) return;
      this.idleTimer = setTimeout(() => {
        this.sleep().catch((error: Error) => this.log.warn({ workload: this.definition.name, err: error.message }, 'stopping the idle workload failed'));
      }, this.definition.onDemand.idleTimeoutMs);
    });
    client.on('error', () => client.destroy());
    this.ready()
      .then(() => splice(client, connect(this.internalPort, '127.0.0.1')))
      .catch((error: Error) => {
        this.log.warn({ workload: this.definition.name, err: error.message }, 'on-demand start failed; connection dropped');
        client.destroy();
      });
  }

  /** Resolves once the workload runs and its guest accepts connections. */
  private ready(): Promise<void> {
    if (this.manager.guest(this.definition.name) && !this.starting) return Promise.resolve();
    this.starting ??= this.wake().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async wake(): Promise<void> {
    const started = performance.now();
    const resume = this.definition.onDemand.snapshot && existsSync(this.snapshot);
    const guestPort = this.definition.ports[0]!.guest;
    await this.manager.run(this.definition.name, { snapshot: resume ? this.snapshot : undefined, hostPorts: [{ guest: guestPort, host: this.internalPort }] });
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (!(await guestAccepts(this.internalPort))) {
      if (performance.now() > deadline) throw new Error(`${this.definition.name} did not accept on port ${guestPort} within ${READY_TIMEOUT_MS / 1000} s`);
      await sleep(50);
    }
    this.stats.lastStartMs = Math.round(performance.now() - started);
    if (resume) this.stats.resumes++;
    else this.stats.starts++;
    this.log.info({ workload: this.definition.name, ms: this.stats.lastStartMs, from: resume ? 'snapshot' : 'cold boot' }, 'on-demand workload ready');
  }

  /** Idle: keep the state in a snapshot for a fast next start, then stop. */
  private async sleep(): Promise<void> {
    const guest = this.manager.guest(this.definition.name);
    if (!guest || this.active.size > 0 || this.starting) return;
    try {
      if (this.definition.onDemand.snapshot) await guest.snapshot(this.snapshot);
    } catch (error) {
      rmSync(this.snapshot, { force: true });
      this.log.warn({ workload: this.definition.name, err: (error as Error).message }, 'snapshot failed; the next start boots cold');
    }
    await this.manager.stop(this.definition.name, 'idle', { snapshot: existsSync(this.snapshot) });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.idleTimer);
    for (const socket of this.active) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
