/**
 * GET /readyz: open without the token like /healthz, 200 with each part `ok` on a running agent
 * (in-process, real embedded broker and SQLite), and 503 naming each part that is not ready:
 * a broker port nobody listens on, a database whose commits fail or whose file is read-only,
 * a cloud link that is down. The readiness checks run against real sockets and files.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notReady, readiness } from '../../src/api/ready.js';
import { startTestAgent, tempDir, type TestAgent } from '../support/agent.js';

/** A port that was free a moment ago: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('GET /readyz', () => {
  let test: TestAgent;
  beforeAll(async () => {
    test = await startTestAgent();
  });
  afterAll(async () => {
    await test?.stop();
  });

  it('answers 200 without a token once the broker accepts and the database is writable', async () => {
    const response = await fetch(`${test.apiUrl}/readyz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ready', broker: 'ok', database: 'ok' });
  });

  it('still wants the token everywhere else', async () => {
    expect((await fetch(`${test.apiUrl}/api/v1/devices`)).status).toBe(401);
  });
});

describe('readiness', () => {
  const dir = tempDir();
  const databaseFile = join(dir, 'twin.db');
  writeFileSync(databaseFile, '');
  const healthy = { health: () => ({ status: 'ok' as const }) };

  it('names a broker that does not accept connections', async () => {
    const state = await readiness({ bus: { url: `mqtt://127.0.0.1:${await closedPort()}` }, database: healthy, databaseFile });
    expect(state.broker).toMatch(/^not accepting on 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(state.database).toBe('ok');
  });

  it('names a database whose commits fail, and one whose file cannot be written', async () => {
    const broker = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => broker.once('listening', resolve));
    const url = `mqtt://127.0.0.1:${(broker.address() as { port: number }).port}`;
    try {
      const failing = await readiness({ bus: { url }, database: { health: () => ({ status: 'degraded', reason: 'commits failing since now: disk full' }) }, databaseFile });
      expect(notReady(failing)).toBe('database: commits failing since now: disk full');
      const missing = await readiness({ bus: { url }, database: healthy, databaseFile: join(dir, 'absent', 'twin.db') });
      expect(missing.database).toMatch(/is not writable \(ENOENT\)$/);
      chmodSync(databaseFile, 0o444);
      // root writes a read-only file all the same: the check says what this process can do.
      const readOnly = await readiness({ bus: { url }, database: healthy, databaseFile });
      expect(readOnly.database).toBe(process.getuid?.() === 0 ? 'ok' : `${databaseFile} is not writable (EACCES)`);
    } finally {
      broker.close();
    }
  });

  it('waits for the cloud link only when it is enabled', async () => {
    const broker = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => broker.once('listening', resolve));
    const url = `mqtt://127.0.0.1:${(broker.address() as { port: number }).port}`;
    try {
      const down = await readiness({ bus: { url }, database: healthy, databaseFile, cloud: () => ({ connected: false, lastError: 'ECONNREFUSED' }) });
      expect(notReady(down)).toBe('cloud: not connected: ECONNREFUSED');
      const up = await readiness({ bus: { url }, database: healthy, databaseFile, cloud: () => ({ connected: true }) });
      expect(notReady(up)).toBe('');
    } finally {
      broker.close();
    }
  });
});
