/**
 * The workloads module on its own (src/workloads/module.ts), as the composition root drives it:
 * its routes served by the one HTTP layer before and after start, and a start that fails halfway
 * (the peer port taken after a workload was autostarted) stopped with no QEMU left running. Real
 * QEMU (TCG) runs the shipped unikernel; the telemetry module is the real one over a stand-in
 * WiFi state.
 */
import { rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import * as v from 'valibot';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody } from '../../src/http/router.js';
import { createLogger } from '../../src/log.js';
import { TelemetryModule } from '../../src/telemetry/index.js';
import { workloadsSection } from '../../src/workloads/config.js';
import { WorkloadsModule, type IdentityAnswer, type WorkloadList } from '../../src/workloads/index.js';
import { tempDir } from '../support/agent.js';
import { accepts } from '../support/ports.js';
import { qemuUnder } from '../support/qemu.js';
import { serveRoutes } from './serve-routes.js';
import { ensureImages, IMAGES } from '../support/images.js';
import { systemPaths } from '../../src/wifi/paths.js';

const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];

function module(dataDir: string, workloads: Record<string, unknown>): WorkloadsModule {
  const telemetry = new TelemetryModule({ wifi: { state: () => ({ status: 'disabled', radio: 'wlan0' }) }, log });
  const config = v.parse(workloadsSection, { enabled: true, images: [IMAGES], listen: { host: '127.0.0.1', port: 0 }, ...workloads });
  return new WorkloadsModule({ config, node: 'module-test', dataDir, runDir: join(dataDir, 'run'), telemetry, paths: systemPaths, log });
}

function newDataDir(): string {
  const dir = tempDir('workload-module-');
  dirs.push(dir);
  return dir;
}

/** GET on the module's routes. */
async function serve(workloads: WorkloadsModule): Promise<(path: string) => Promise<{ status: number; body: unknown }>> {
  const served = await serveRoutes(workloads.routes, log);
  closers.push(() => served.close());
  return (path) => served.call('GET', path);
}

beforeAll(() => {
  ensureImages();
}, 300_000);

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

afterAll(() => {
  for (const dir of dirs) {
    expect(qemuUnder(dir)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('the workloads module', () => {
  it('answers 503 until it is started, then serves its routes; stop closes its peer port', async () => {
    const workloads = module(newDataDir(), { workloads: [{ name: 'ticker', image: 'unikernel-ticker' }] });
    const get = await serve(workloads);
    expect(await get('/api/v1/workloads')).toEqual({ status: 503, body: { code: 503, reason: 'workloads are not started' } satisfies ErrorBody });

    await workloads.start(new AbortController().signal);
    const { port, fingerprint } = workloads.endpoint();
    expect(await get('/api/v1/workloads/identity')).toEqual({ status: 200, body: { port, fingerprint } satisfies IdentityAnswer });
    expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const list = (await get('/api/v1/workloads')).body as WorkloadList;
    expect(list.workloads).toMatchObject([{ name: 'ticker', state: 'stopped', origin: 'local' }]);
    expect(await get('/api/v1/workloads/nothing')).toMatchObject({ status: 404, body: { code: 404, reason: expect.stringMatching(/^no workload nothing/) } });
    expect(await accepts(port)).toBe(true);

    await workloads.stop();
    expect(await accepts(port)).toBe(false);
    expect(await get('/api/v1/workloads')).toMatchObject({ status: 503 });
  });

  it('stopped after a start that failed at the peer port, leaves no QEMU running; the next start runs the workload again', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as AddressInfo).port;
    const dataDir = newDataDir();
    const config = { listen: { host: '127.0.0.1', port }, workloads: [{ name: 'ticker', image: 'unikernel-ticker', autostart: true }] };

    const first = module(dataDir, config);
    await expect(first.start(new AbortController().signal)).rejects.toThrow(`cannot listen for peers on 127.0.0.1:${port}`);
    expect(qemuUnder(dataDir)).toHaveLength(1);
    await first.stop();
    expect(qemuUnder(dataDir)).toEqual([]);

    // The database was closed and the record left `running`: another start opens it and runs the workload again.
    const second = module(dataDir, { ...config, listen: { host: '127.0.0.1', port: 0 } });
    await second.start(new AbortController().signal);
    const get = await serve(second);
    const list = (await get('/api/v1/workloads')).body as WorkloadList;
    expect(list.workloads).toMatchObject([{ name: 'ticker', state: 'running', pid: expect.any(Number) }]);
    await second.stop();
    expect(qemuUnder(dataDir)).toEqual([]);
  }, 60_000);
});
