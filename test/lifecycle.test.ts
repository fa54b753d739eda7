/**
 * Starting and stopping the module list (src/lifecycle.ts): order, rollback in reverse when a
 * module fails to start, and stops isolated from each other. Modules here are plain objects.
 */
import { describe, expect, it } from 'vitest';
import { startModules } from '../src/lifecycle.js';
import { createLogger } from '../src/log.js';
import { MODULE, type Module, type ModuleName } from '../src/module.js';

const log = createLogger('silent');

function recorder() {
  const events: string[] = [];
  const module = (name: ModuleName, behaviour: { failStart?: boolean; failStop?: boolean } = {}): Module => ({
    name,
    async start() {
      events.push(`start ${name}`);
      if (behaviour.failStart) throw new Error(`${name} cannot start`);
    },
    async stop() {
      events.push(`stop ${name}`);
      if (behaviour.failStop) throw new Error(`${name} cannot stop`);
    },
  });
  return { events, module };
}

describe('module lifecycle', () => {
  it('starts in order and stops in reverse, once', async () => {
    const { events, module } = recorder();
    const running = await startModules([module(MODULE.catalog), module(MODULE.bus), module(MODULE.api)], log);
    await Promise.all([running.stop(), running.stop()]);
    expect(events).toEqual(['start catalog', 'start bus', 'start api', 'stop api', 'stop bus', 'stop catalog']);
  });

  it('stops what started, the failed one included, in reverse, and rethrows', async () => {
    const { events, module } = recorder();
    const starting = startModules([module(MODULE.bus), module(MODULE.workloads), module(MODULE.api, { failStart: true }), module(MODULE.mapperhost)], log);
    await expect(starting).rejects.toThrow('api cannot start');
    expect(events).toEqual(['start bus', 'start workloads', 'start api', 'stop api', 'stop workloads', 'stop bus']);
  });

  it('keeps stopping the others when one stop fails', async () => {
    const { events, module } = recorder();
    const running = await startModules([module(MODULE.bus), module(MODULE.wifi, { failStop: true }), module(MODULE.api)], log);
    await running.stop();
    expect(events.filter((e) => e.startsWith('stop'))).toEqual(['stop api', 'stop wifi', 'stop bus']);
  });

  it('aborts the start signal when a later module fails', async () => {
    const { module } = recorder();
    let signal: AbortSignal | undefined;
    const watching: Module = { name: MODULE.telemetry, start: async (s) => void (signal = s), stop: async () => undefined };
    await expect(startModules([watching, module(MODULE.api, { failStart: true })], log)).rejects.toThrow();
    expect(signal?.aborted).toBe(true);
  });
});
