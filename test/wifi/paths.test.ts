/**
 * Where the agent's own traffic leaves from (src/wifi/paths.ts): the placement rules, and the
 * cloud link bound to the placed address against the CloudHub-compatible server, moving when
 * the placement moves. Loopback addresses (127.0.0.2, 127.0.0.3) stand for the identities'
 * addresses here; paths-testbed.test.ts (`npm run test:paths` runs both) does it in the VM with
 * real WiFi identities.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloudSection } from '../../src/cloud/config.js';
import { CloudLink } from '../../src/cloud/link.js';
import { createLogger } from '../../src/log.js';
import { wifiConfig } from '../../src/wifi/config.js';
import { PathError, TrafficPaths, type PathCandidate } from '../../src/wifi/paths.js';
import { tempDir } from '../support/agent.js';
import { startCloudHub, type CloudHub } from '../support/cloudhub/server.js';
import { waitFor } from '../support/wait.js';

const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

const trustedA: PathCandidate = { identity: 'wid0', address: '127.0.0.2', table: 1000, trusted: true, score: 20 };
const trustedB: PathCandidate = { identity: 'wid1', address: '127.0.0.3', table: 1001, trusted: true, score: 10 };
const open: PathCandidate = { identity: 'wid2', address: '127.0.0.4', table: 1002, trusted: false, score: 50 };

function paths(config: Parameters<typeof wifiConfig>[0] = {}): TrafficPaths {
  return new TrafficPaths(wifiConfig({ enabled: true, ...config }));
}

describe('placement of the agent’s own traffic', () => {
  it('leaves everything to the system’s routes when WiFi is off, and what is not named sensitive', () => {
    expect(new TrafficPaths(wifiConfig({})).state()).toEqual({ cloud: { via: 'system' }, peers: { via: 'system' }, migration: { via: 'system' } });
    const some = paths({ sensitive: ['cloud'] });
    some.update({ candidates: [trustedA] });
    expect(some.place('peers')).toEqual({ via: 'system' });
    expect(some.place('cloud')).toMatchObject({ via: 'identity', identity: 'wid0' });
  });

  it('waits while WiFi starts, and while only untrusted identities are associated, saying so', () => {
    const placed = paths();
    expect(placed.place('cloud')).toEqual({ via: 'none', reason: 'WiFi is starting' });
    placed.update({ candidates: [open] });
    expect(placed.place('cloud')).toEqual({ via: 'none', reason: 'no trusted WiFi identity is associated (1 untrusted one(s) are; wifi.fallback: any would use them)' });
  });

  it('takes the best trusted identity, never an open one however good, and keeps it while it keeps its address', () => {
    const placed = paths();
    placed.update({ candidates: [open, trustedB] });
    expect(placed.place('cloud')).toEqual({ via: 'identity', identity: 'wid1', address: '127.0.0.3', table: 1001, trusted: true });
    // A better trusted identity appears: no reason to move a working connection.
    placed.update({ candidates: [open, trustedB, trustedA] });
    expect(placed.place('cloud')).toMatchObject({ identity: 'wid1' });
    // Its address changes: it moves, to the best one now.
    placed.update({ candidates: [open, { ...trustedB, address: '127.0.0.9' }, trustedA] });
    expect(placed.place('migration')).toMatchObject({ identity: 'wid0', address: '127.0.0.2' });
    expect(placed.pool().map((c) => c.identity)).toEqual(['wid1', 'wid0']);
  });

  it('with fallback any, takes an untrusted identity when no trusted one is there, else the system’s routes', () => {
    const placed = paths({ fallback: 'any' });
    placed.update({ candidates: [open] });
    expect(placed.place('peers')).toEqual({ via: 'identity', identity: 'wid2', address: '127.0.0.4', table: 1002, trusted: false });
    placed.update({ candidates: [] });
    expect(placed.place('peers')).toEqual({ via: 'system' });
  });

  it('announces changes only, and whenPlaced waits for a path or names why there is none', async () => {
    const placed = paths();
    let changes = 0;
    const remove = placed.onChange(() => changes++);
    const waiting = placed.whenPlaced('cloud', 5000);
    placed.update({ candidates: [trustedA] });
    placed.update({ candidates: [trustedA] });
    await expect(waiting).resolves.toMatchObject({ identity: 'wid0' });
    expect(changes).toBe(1);
    remove();
    placed.update({ candidates: [] });
    expect(changes).toBe(1);
    const error = await placed.whenPlaced('peers', 50).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PathError);
    expect((error as Error).message).toBe('no path for peers traffic after 50 ms: no trusted WiFi identity is associated');
  });

  it('refuses a sensitive kind of traffic in the config twice, or one it does not know', () => {
    expect(() => wifiConfig({ sensitive: ['cloud', 'cloud'] })).toThrow(/each kind of traffic once/);
    expect(() => wifiConfig({ sensitive: ['mqtt' as 'cloud'] })).toThrow();
  });
});

describe('the cloud link on its path', () => {
  let hub: CloudHub;
  const dir = tempDir('paths-cloud-');

  beforeAll(async () => {
    hub = await startCloudHub();
  });

  afterAll(async () => {
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects from the placed address, waits without a trusted identity, and moves when the identity does', async () => {
    const placed = paths();
    const config = v.parse(cloudSection, { enabled: true, server: '127.0.0.1', httpsPort: hub.httpsPort, websocketPort: hub.wsPort, token: hub.token, heartbeatMs: 1000 });
    const link = new CloudLink(config, 'paths-node', join(dir, 'data'), placed, log);
    let connects = 0;
    link.on('connected', () => connects++);
    link.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(link.state()).toMatchObject({ connected: false, path: { via: 'none', reason: 'WiFi is starting' }, lastError: 'waiting for a path: WiFi is starting' });
      expect(connects).toBe(0);

      placed.update({ candidates: [open, trustedA] });
      await waitFor('the link up from 127.0.0.2', () => link.state().connected);
      expect(link.state()).toMatchObject({ source: '127.0.0.2', path: { identity: 'wid0' } });

      // wid0 lost its AP; wid1 is trusted: the link moves at once, not after a backoff.
      const movedAt = performance.now();
      placed.update({ candidates: [open, trustedB] });
      await waitFor('the link up from 127.0.0.3', () => link.state().connected && link.state().source === '127.0.0.3', { timeoutMs: 5000 });
      expect(performance.now() - movedAt).toBeLessThan(3000);
      expect(connects).toBe(2);

      // Only the open network is left: the link goes down and waits rather than use it.
      placed.update({ candidates: [open] });
      await waitFor('the link down', () => !link.state().connected);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(link.state()).toMatchObject({ connected: false, path: { via: 'none' } });
      expect(connects).toBe(2);
    } finally {
      await link.stop();
    }
  });
});
