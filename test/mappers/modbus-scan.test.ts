/**
 * `edge-agent modbus scan` (`mappers/modbus/scan.ts`, the `modbus` command of `src/cli.ts`)
 * against a pymodbus server (test/fixtures/modbus/server.py) over TCP: two unit ids of four,
 * one with holes answering exceptions 2, 3 and 4, both with FC43 identification. The CLI runs
 * from dist/ (build first).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanModbus, type ScanResult } from '../../mappers/modbus/scan.js';
import { CLI } from '../support/agent.js';
import { startModbusTcp, type ModbusTcpServer } from '../support/modbus.js';

const IDENTITY = { VendorName: 'ACME', ProductCode: 'EM-42', MajorMinorRevision: '1.7' };

describe('modbus scan of a pymodbus server with holes', () => {
  let server: ModbusTcpServer;

  beforeAll(async () => {
    server = await startModbusTcp({
      identity: IDENTITY,
      // 200 registers per table: from 200 on, every address answers exception 2.
      slaves: {
        1: { illegal: { hr: [[10, 20]] }, refuse: { hr: [[50, 52, 3]], ir: [[100, 101, 4]] } },
        3: {},
      },
    });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const scan = (deadlineMs = 30_000) =>
    scanModbus({ transport: { kind: 'tcp', host: '127.0.0.1', port: server.port }, units: [1, 4], registers: [0, 299], timeoutMs: 200, deadlineMs });

  const EXPECTED: ScanResult = {
    complete: true,
    units: [
      { unit: 1, identification: IDENTITY, holdingRegisters: [[0, 9], [20, 49], [52, 199]], inputRegisters: [[0, 99], [101, 199]] },
      { unit: 3, identification: IDENTITY, holdingRegisters: [[0, 199]], inputRegisters: [[0, 199]] },
    ],
  };

  it('finds the unit ids that answer, their identification, and the register ranges around the holes', async () => {
    expect(await scan()).toEqual(EXPECTED);
  });

  it('stops at the deadline and says the result is incomplete', async () => {
    const started = performance.now();
    const result = await scan(300);
    expect(result.complete).toBe(false);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it('the CLI prints the same as JSON, and as text', async () => {
    const run = (...args: string[]) => promisify(execFile)(process.execPath, [CLI, 'modbus', 'scan', '--tcp', `127.0.0.1:${server.port}`, '--units', '1-4', '--registers', '0-299', '--timeout', '200', ...args]);
    expect(JSON.parse((await run('--json')).stdout)).toEqual(EXPECTED);
    const { stdout, stderr } = await run();
    expect(stdout).toContain('unit 1: VendorName=ACME, ProductCode=EM-42, MajorMinorRevision=1.7\n  holding registers: 0-9, 20-49, 52-199\n  input registers:   0-99, 101-199');
    expect(stderr).toBe(''); // not a terminal: no progress
  }, 30_000);
});
