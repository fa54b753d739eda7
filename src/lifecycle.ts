/**
 * Starting and stopping the module list: in order, rolled back in reverse when one fails, stopped
 * in reverse with each stop isolated, so one failure never leaves a port open or a process running.
 */
import type { Logger } from './log.js';
import type { Module } from './module.js';

export interface Running {
  /** Stops every started module in reverse order; a failing stop is logged and the others still stop. */
  stop(): Promise<void>;
}

async function stopAll(started: readonly Module[], log: Logger): Promise<void> {
  for (const module of [...started].reverse()) {
    try {
      await module.stop();
    } catch (error) {
      log.error({ module: module.name, err: error }, 'module did not stop cleanly');
    }
  }
}

/** Starts `modules` in order. If one fails, those started (and the failed one) are stopped in reverse and the error is rethrown. */
export async function startModules(modules: readonly Module[], log: Logger): Promise<Running> {
  const aborting = new AbortController();
  const started: Module[] = [];
  for (const module of modules) {
    // The failed one is stopped too: it may have opened part of what it needed.
    started.push(module);
    try {
      await module.start(aborting.signal);
    } catch (error) {
      aborting.abort(error);
      log.error({ module: module.name, err: error }, 'module failed to start; stopping the others');
      await stopAll(started, log);
      throw error;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    stop: () => (stopping ??= stopAll(started, log)),
  };
}
