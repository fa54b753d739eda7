/**
 * Connecting one network through NetworkManager with `nmcli device wifi connect`, the passphrase
 * on nmcli's standard input: on its command line (where node-wifi's connect puts it, and the
 * word "undefined" for an open network) every local user reads it in /proc/<pid>/cmdline.
 */
import { spawn } from 'node:child_process';

export interface NmcliConnect {
  ssid: string;
  /** Absent for an open network. */
  passphrase?: string;
  ifname: string;
  timeoutMs: number;
}

/**
 * nmcli's arguments, none of them secret. With a passphrase, `--ask` has nmcli read it from
 * standard input when NetworkManager asks for the network's secrets; without one nmcli never
 * reads, and a network that turns out to need a passphrase fails instead of waiting.
 */
export function nmcliConnectArgs({ ssid, passphrase, ifname, timeoutMs }: NmcliConnect): string[] {
  const ask = passphrase === undefined ? [] : ['--ask'];
  return [...ask, '--wait', String(Math.ceil(timeoutMs / 1000)), 'device', 'wifi', 'connect', ssid, 'ifname', ifname];
}

/** Resolves once NetworkManager has connected; rejects with nmcli's own message. */
export function nmcliConnect(target: NmcliConnect): Promise<void> {
  return new Promise((resolve, reject) => {
    // Its standard output, where the prompt goes, is not kept; its errors go to standard error.
    // The timeout is a little beyond nmcli's own --wait, so that its message says what went wrong.
    const child = spawn('nmcli', nmcliConnectArgs(target), { stdio: ['pipe', 'ignore', 'pipe'], timeout: target.timeoutMs + 5000 });
    let errors = '';
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.once('error', (error) => reject(new Error(`cannot run nmcli: ${error.message} (Debian package network-manager)`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      const why = errors.trim().split('\n').at(-1) || (signal ? `killed by ${signal}` : `exit code ${code}`);
      reject(new Error(`nmcli could not connect to ${target.ssid}: ${why}`));
    });
    // A write to an nmcli that exited early fails; its exit status above says why.
    child.stdin.on('error', () => undefined);
    child.stdin.end(target.passphrase === undefined ? '' : `${target.passphrase}\n`);
  });
}
