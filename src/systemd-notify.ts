/**
 * Tells systemd (a `Type=notify` unit) that the agent is ready, that it is stopping, and, when the
 * unit has a watchdog, that its event loop still turns. Node has no unix datagram sockets, so
 * each message goes through the `systemd-notify` binary; the unit sets `NotifyAccess=all` because
 * the sender is that child, not the main process. systemd-notify waits until systemd has read the
 * message (its default, not --no-block), so a message is never lost to the child exiting first.
 * Without NOTIFY_SOCKET (not started by systemd) nothing is sent and nothing is spawned.
 */
import { execFile } from 'node:child_process';
import type { Logger } from './log.js';

export interface Notifier {
  /** READY=1 with a status line. */
  ready(status: string): void;
  /** STOPPING=1, and the watchdog pings end. */
  stopping(): void;
}

const SILENT: Notifier = { ready: () => undefined, stopping: () => undefined };

export function systemdNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  if (!env.NOTIFY_SOCKET) return SILENT;
  let warned = false;
  const send = (args: string[]) =>
    execFile('systemd-notify', args, (error) => {
      // Logged once: a missing binary fails every ping the same way, and the watchdog then says the rest.
      if (error && !warned) {
        warned = true;
        log.warn({ err: error.message, args }, 'systemd-notify failed: systemd may not see the agent ready or alive');
      }
    });
  // The watchdog is armed for the main process only (WATCHDOG_PID); pinging at half the period
  // leaves a whole half for a ping stuck behind a busy event loop, as sd_watchdog_enabled(3) advises.
  const watchdogUsec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  let watchdog: NodeJS.Timeout | undefined;
  return {
    ready(status) {
      send(['--ready', `--status=${status}`]);
      if (watchdogUsec > 0 && forUs) {
        // From a timer on the event loop: a loop that hangs stops the pings, and systemd restarts the agent.
        watchdog = setInterval(() => send(['WATCHDOG=1']), Math.max(1000, watchdogUsec / 2000));
        watchdog.unref();
      }
    },
    stopping() {
      clearInterval(watchdog);
      send(['STOPPING=1']);
    },
  };
}
