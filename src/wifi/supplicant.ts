/**
 * One wpa_supplicant for all identities, driven through its global control interface:
 * interfaces are added and removed with INTERFACE_ADD/INTERFACE_REMOVE, each then gets a
 * control socket of its own. The agent starts the daemon, or uses one already running.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { WpaCtrl, WpaCtrlError } from './wpa-ctrl.js';

export interface SupplicantOptions {
  /** Directory for the per-interface control sockets and the agent's own client sockets. */
  runDir: string;
  /** A running wpa_supplicant's global socket (`wpa_supplicant -g PATH`); when absent the agent starts one. */
  globalSocket?: string;
  binary?: string;
}

async function waitForSocket(path: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!existsSync(path)) {
    if (child.exitCode !== null) throw new WpaCtrlError(`wpa_supplicant exited with code ${child.exitCode} before opening ${path}`);
    if (performance.now() > deadline) throw new WpaCtrlError(`wpa_supplicant did not open ${path} within ${timeoutMs} ms`);
    await sleep(20);
  }
}

export class Supplicant {
  private constructor(
    private readonly global: WpaCtrl,
    private readonly ctrlDir: string,
    private readonly clientDir: string,
    /** Settings every identity shares: no P2P, which would add a p2p-dev interface per identity. */
    private readonly baseConfig: string,
    private readonly child: ChildProcess | undefined,
    private readonly log: Logger,
  ) {}

  static async start(options: SupplicantOptions, log: Logger): Promise<Supplicant> {
    const ctrlDir = join(options.runDir, 'wpa');
    const clientDir = join(options.runDir, 'wpa-clients');
    mkdirSync(ctrlDir, { recursive: true, mode: 0o700 });
    let child: ChildProcess | undefined;
    let globalSocket = options.globalSocket;
    if (!globalSocket) {
      globalSocket = join(options.runDir, 'wpa-global');
      const binary = options.binary ?? 'wpa_supplicant';
      child = spawn(binary, ['-g', globalSocket, '-t'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const spawned = new Promise<void>((resolve, reject) => {
        child!.once('spawn', resolve);
        child!.once('error', (error) => reject(new WpaCtrlError(`cannot start ${binary}: ${error.message} (Debian package wpasupplicant)`)));
      });
      for (const stream of [child.stdout!, child.stderr!]) {
        stream.on('data', (chunk: Buffer) => {
          for (const line of chunk.toString().split('\n')) if (line.trim()) log.debug({ wpa_supplicant: line.trim() }, 'wpa_supplicant');
        });
      }
      child.once('exit', (code, signal) => log.warn({ code, signal }, 'wpa_supplicant exited'));
      await spawned;
      await waitForSocket(globalSocket, child, 5000);
    }
    const global = new WpaCtrl(globalSocket, clientDir);
    try {
      const pong = await global.request('PING', 2000);
      if (pong.trim() !== 'PONG') throw new WpaCtrlError(`${globalSocket}: PING answered ${pong.trim()}`);
    } catch (error) {
      global.close();
      child?.kill();
      throw error;
    }
    const baseConfig = join(options.runDir, 'wpa-identity.conf');
    writeFileSync(baseConfig, 'p2p_disabled=1\n', { mode: 0o600 });
    return new Supplicant(global, ctrlDir, clientDir, baseConfig, child, log);
  }

  /** Puts `ifname` under wpa_supplicant's control and returns a control connection to it, attached to its events. */
  async addInterface(ifname: string): Promise<WpaCtrl> {
    const known = (await this.global.command('INTERFACES')).split('\n').map((line) => line.trim());
    if (!known.includes(ifname)) {
      // <ifname>TAB<confname>TAB<driver>TAB<ctrl_interface>TAB<driver_param>TAB<bridge_name>
      await this.global.command(['INTERFACE_ADD ' + ifname, this.baseConfig, 'nl80211', this.ctrlDir, '', ''].join('\t'), 10_000);
    }
    const ctrl = new WpaCtrl(join(this.ctrlDir, ifname), this.clientDir);
    try {
      await ctrl.attach();
    } catch (error) {
      ctrl.close();
      throw error;
    }
    this.log.debug({ ifname }, 'interface added to wpa_supplicant');
    return ctrl;
  }

  async removeInterface(ifname: string): Promise<void> {
    await this.global.request(`INTERFACE_REMOVE ${ifname}`).catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null) {
      await this.global.request('TERMINATE', 2000).catch(() => undefined);
      const exited = new Promise((resolve) => this.child!.once('exit', resolve));
      const timer = setTimeout(() => this.child!.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    this.global.close();
  }
}
