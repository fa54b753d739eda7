/**
 * The composition root as a user meets it: an agent that cannot open its API port gives up at
 * once and leaves nothing behind (no MQTT port listening). Real processes and sockets.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, NODE_NAME, tempDir } from './support/agent.js';
import { accepts, freePort } from './support/ports.js';

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('agent start', () => {
  const data = tempDir();
  const taken = createServer();

  afterAll(async () => {
    await new Promise((resolve) => taken.close(resolve));
    rmSync(data, { recursive: true, force: true });
  });

  it('exits non-zero within 2 s when its API port is taken, leaving no MQTT port listening', async () => {
    const apiPort = await listen(taken);
    const mqttPort = await freePort();
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, 'start', '--node', NODE_NAME, '--data', data, '--mqtt-port', String(mqttPort), '--api-port', String(apiPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
    const elapsed = performance.now() - started;
    expect(code).not.toBe(0);
    expect(stderr).toContain(`127.0.0.1:${apiPort} is already in use`);
    expect(elapsed).toBeLessThan(2000);
    expect(await accepts(mqttPort)).toBe(false);
  });
});
