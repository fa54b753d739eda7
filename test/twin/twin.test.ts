/**
 * The device twin (Twins over a real SQLite TwinStore) against KubeEdge's devicetwin semantics
 * (KubeEdge edge/pkg/devicetwin/dtmanager/twin.go): adds, versions, validation, deletion, delta,
 * result/document shapes, device state, bounded history and persistence.
 *
 * Only `Date` is faked, so timestamps are exact; the store's setImmediate group commit runs for real.
 */
import BetterSqlite3 from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { Database } from '../../src/db/database.js';
import { TwinStore } from '../../src/twin/store.js';
import { Twins, type TwinChange, type TwinUpdate } from '../../src/twin/twins.js';
import { TwinError, type DeviceRecord, type TwinProperty } from '../../src/twin/types.js';
import { tempDir } from '../support/agent.js';
import { thrown } from '../support/errors.js';

const T0 = new Date(2024, 0, 2, 3, 4, 5).getTime(); // local time: last_online reads "2024-01-02 03:04:05"
const ID = 'default/sensor';
const KEY_ERROR = /^The key of twin must only include upper or lowercase letters, number, english, and special letter - _ \. , : \/ @ # and the length of key should be less than 128 bytes$/;
const VALUE_ERROR = /^The value of twin must only include .* and the length of value should be less than 512 bytes$/;

let dir: string;
let dbFile: string;
let db: Database;
let twins: Twins;
let changes: TwinChange[];
let listenerErrors: unknown[];

function open(historySize = 5): void {
  db = new Database(dbFile);
  twins = new Twins(new TwinStore(db, historySize), (error) => listenerErrors.push(error), resolveConfig({}).twin);
  changes = [];
  twins.onChange((change) => changes.push(change));
}

/**
 * A device as the agent creates it from a DeviceModel: `temperature` (float, reported seed),
 * `count` (int, no seed), `enabled` (boolean, desired seed), `mode` (string, both seeds).
 */
function addSensor(id = ID): DeviceRecord {
  const [namespace, name] = id.split('/') as [string, string];
  return twins.upsertDevice({
    id,
    namespace,
    name,
    description: 'test sensor',
    attributes: { vendor: { value: 'acme', optional: false, metadata: { type: 'string' } } },
    managed: true,
    twins: {
      temperature: { type: 'float', reported: '21.5' },
      count: { type: 'int' },
      enabled: { type: 'boolean', desired: 'true' },
      mode: { type: 'string', desired: 'auto', reported: 'auto' },
    },
  });
}

function twin(key: string, id = ID): TwinProperty | undefined {
  return twins.get(id)?.twin.get(key);
}

/** A twin with every field present, so that `undefined` can be asserted with toMatchObject. */
function view(key: string) {
  const p = twin(key);
  return p && { type: p.type, optional: p.optional, expected: p.expected, actual: p.actual, expectedVersion: p.expectedVersion, actualVersion: p.actualVersion, historySeq: p.historySeq };
}

function snapshot(id = ID): DeviceRecord | undefined {
  return structuredClone(twins.get(id));
}

const twinError = (fn: () => unknown): TwinError => thrown(TwinError, fn);

function readDb<T>(sql: string, ...params: unknown[]): T[] {
  const db = new BetterSqlite3(dbFile, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T0);
  dir = tempDir('twin-test-');
  dbFile = join(dir, 'twin.db');
  listenerErrors = [];
  open();
  addSensor();
});

afterEach(async () => {
  await twins.flushed();
  db.close();
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
  expect(listenerErrors).toEqual([]);
});

// ---------------------------------------------------------------------------------------------

describe('seeded device', () => {
  it('creates the model twins with their types, optional, seeds at version {cloud:1, edge:0}', () => {
    const device = twins.get(ID)!;
    expect(device).toMatchObject({ id: ID, namespace: 'default', name: 'sensor', state: 'unknown', lastOnline: '', managed: true });
    expect(Object.fromEntries(device.twin)).toEqual({
      temperature: { type: 'float', optional: true, historySeq: 0, inModel: true, actual: { value: '21.5', timestamp: T0 }, actualVersion: { cloud: 1, edge: 0 } },
      count: { type: 'int', optional: true, historySeq: 0, inModel: true },
      enabled: { type: 'boolean', optional: true, historySeq: 0, inModel: true, expected: { value: 'true', timestamp: T0 }, expectedVersion: { cloud: 1, edge: 0 } },
      mode: {
        type: 'string',
        optional: true,
        historySeq: 0,
        inModel: true,
        expected: { value: 'auto', timestamp: T0 },
        expectedVersion: { cloud: 1, edge: 0 },
        actual: { value: 'auto', timestamp: T0 },
        actualVersion: { cloud: 1, edge: 0 },
      },
    });
  });

  it('upserting again keeps the existing twins, adds missing ones and marks the keys the model defines now', () => {
    twins.report(ID, { count: '3' });
    twins.upsertDevice({ id: ID, namespace: 'default', name: 'sensor', managed: false, twins: { count: { type: 'int', reported: '0' }, extra: { type: 'string' } } });
    expect(twin('count')).toMatchObject({ actual: { value: '3' }, inModel: true });
    expect(twin('extra')).toEqual({ type: 'string', optional: true, historySeq: 0, inModel: true });
    expect(twin('mode')!.inModel).toBe(false);
    expect(twins.get(ID)!.managed).toBe(false);
  });
});

describe('adding unknown keys', () => {
  it.each<[string, TwinUpdate[string], Partial<TwinProperty>]>([
    ['actual only: type "string", optional true, actual version {0,1}', { actual: { value: 'v1' } }, { type: 'string', optional: true, actual: { value: 'v1', timestamp: T0 }, actualVersion: { cloud: 0, edge: 1 } }],
    [
      'expected and actual: both versions {0,1}',
      { expected: { value: 'on' }, actual: { value: 'off' } },
      { type: 'string', expected: { value: 'on', timestamp: T0 }, expectedVersion: { cloud: 0, edge: 1 }, actual: { value: 'off', timestamp: T0 }, actualVersion: { cloud: 0, edge: 1 } },
    ],
    ['type from metadata', { actual: { value: '42' }, metadata: { type: 'int' } }, { type: 'int', actual: { value: '42', timestamp: T0 }, actualVersion: { cloud: 0, edge: 1 } }],
    ['optional false as given', { expected: { value: '1.5' }, metadata: { type: 'float' }, optional: false }, { type: 'float', optional: false, expectedVersion: { cloud: 0, edge: 1 } }],
    ['metadata without a type: type ""', { actual: { value: 'x' }, metadata: {} }, { type: '' }],
    ['no values: the key exists without versions', { optional: true }, { type: 'string', optional: true, expected: undefined, actual: undefined, expectedVersion: undefined, actualVersion: undefined }],
    ['an empty value is stored as absent, its version still set', { actual: { value: '' } }, { actual: undefined, actualVersion: { cloud: 0, edge: 1 } }],
  ])('%s', (_, request, expected) => {
    const change = twins.update(ID, { fresh: request }, 'mqtt', 'ev-1');
    expect(view('fresh')).toMatchObject(expected);
    expect(Object.keys(change.result)).toEqual(['fresh']);
    expect(change.document.fresh!.last).toBeNull();
  });

  it('result and document show the new twin without versions', () => {
    const change = twins.update(ID, { humidity: { actual: { value: '40' }, metadata: { type: 'int' } } }, 'mqtt', 'ev-2');
    const shown = { actual: { value: '40', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'int' } };
    expect({ deviceId: change.deviceId, origin: change.origin, eventId: change.eventId, delta: change.delta }).toEqual({
      deviceId: ID,
      origin: 'mqtt',
      eventId: 'ev-2',
      delta: twins.delta(ID),
    });
    expect(change.result).toEqual({ humidity: shown });
    expect(change.document).toEqual({ humidity: { last: null, current: shown } });
  });

  it('announces the change once it is committed to SQLite', async () => {
    const seen: Array<string | null> = [];
    twins.onChange((change) => {
      const rows = readDb<{ actual: string }>('SELECT actual FROM twin WHERE device_id = ? AND key = ?', change.deviceId, 'humidity');
      seen.push(rows[0]?.actual ?? null);
    });
    twins.update(ID, { humidity: { actual: { value: '41' } } }, 'mqtt');
    expect(changes).toEqual([]); // not before the commit
    await twins.flushed();
    expect(seen).toEqual(['41']);
    expect(changes).toHaveLength(1);
  });
});

describe('versions and changes', () => {
  it('every given value moves the edge version of its side; the cloud version and the other side stay', () => {
    twins.desire(ID, { mode: 'manual' });
    expect(twin('mode')).toMatchObject({ expectedVersion: { cloud: 1, edge: 1 }, actualVersion: { cloud: 1, edge: 0 } });
    twins.report(ID, { mode: 'manual' });
    twins.report(ID, { mode: 'manual' });
    expect(twin('mode')).toMatchObject({ expectedVersion: { cloud: 1, edge: 1 }, actualVersion: { cloud: 1, edge: 2 } });
    twins.update(ID, { mode: { expected: { value: 'eco' }, actual: { value: 'eco' } } }, 'mqtt');
    expect(twin('mode')).toMatchObject({ expectedVersion: { cloud: 1, edge: 2 }, actualVersion: { cloud: 1, edge: 3 } });
  });

  it('a twin without versions gets {cloud:0, edge:1} on its first value', () => {
    twins.report(ID, { count: '1' });
    expect(twin('count')).toMatchObject({ actualVersion: { cloud: 0, edge: 1 }, expectedVersion: undefined });
  });

  it('sending the same value again still counts as a change (new timestamp, version, result, document)', async () => {
    vi.setSystemTime(T0 + 1000);
    const change = twins.report(ID, { mode: 'auto' });
    expect(twin('mode')).toMatchObject({ actual: { value: 'auto', timestamp: T0 + 1000 }, actualVersion: { cloud: 1, edge: 1 } });
    expect(change.result).toEqual({ mode: { actual: { value: 'auto', metadata: { timestamp: T0 + 1000 } }, optional: true, metadata: { type: 'string' } } });
    expect(change.document.mode!.last!.actual).toEqual({ value: 'auto', metadata: { timestamp: T0 } });
    expect(change.document.mode!.current!.actual).toEqual({ value: 'auto', metadata: { timestamp: T0 + 1000 } });
    await twins.flushed();
    expect(changes).toHaveLength(1);
  });

  it('a request that gives nothing for an existing key changes nothing', () => {
    const before = snapshot();
    const change = twins.update(ID, { mode: {}, count: { optional: true }, temperature: { metadata: { type: 'float' } } }, 'mqtt');
    expect(change.result).toEqual({});
    expect(change.document).toEqual({});
    expect(snapshot()).toEqual(before);
  });

  it('result shows only the touched side plus optional and metadata; document shows last and current', () => {
    vi.setSystemTime(T0 + 5);
    const change = twins.update(ID, { mode: { expected: { value: 'eco' } } }, 'api', 'ev-3');
    expect(change.result).toEqual({ mode: { expected: { value: 'eco', metadata: { timestamp: T0 + 5 } }, optional: true, metadata: { type: 'string' } } });
    expect(change.document).toEqual({
      mode: {
        last: { expected: { value: 'auto', metadata: { timestamp: T0 } }, actual: { value: 'auto', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'string' } },
        current: { expected: { value: 'eco', metadata: { timestamp: T0 + 5 } }, actual: { value: 'auto', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'string' } },
      },
    });
    for (const shown of [change.result.mode, change.document.mode!.last, change.document.mode!.current]) {
      expect(shown).not.toHaveProperty('expected_version');
      expect(shown).not.toHaveProperty('actual_version');
    }
  });

  it('report() and desire() are twin/update with actual or expected values only', () => {
    twins.report(ID, { temperature: '22.5', count: '7' });
    twins.desire(ID, { enabled: 'false' });
    expect(twin('temperature')!.actual!.value).toBe('22.5');
    expect(twin('count')!.actual!.value).toBe('7');
    expect(twin('enabled')).toMatchObject({ expected: { value: 'false' }, actual: undefined });
  });
});

describe('validation', () => {
  describe('values against the twin type', () => {
    it.each([
      ['count', 'int', '42'],
      ['count', 'int', '-7'],
      ['count', 'int', '9223372036854775807'],
      ['count', 'int', '-9223372036854775808'],
      ['temperature', 'float', '21.5'],
      ['temperature', 'float', '-0.5'],
      ['temperature', 'float', '3'],
      ['temperature', 'float', '1e3'],
      ['temperature', 'float', '.5'],
      ['enabled', 'boolean', 'true'],
      ['enabled', 'boolean', 'false'],
      ['mode', 'string', 'any-thing_1.2,3:4/5@6#7'],
      ['mode', 'string', ''],
    ])('%s (%s) accepts %j', (key, _, value) => {
      for (const side of ['expected', 'actual'] as const) {
        twins.update(ID, { [key]: { [side]: { value } } }, 'mqtt');
        expect(twin(key)![side]?.value ?? '').toBe(value);
      }
    });

    it.each([
      ['count', 'int', '1.5', 'the value is not int or integer'],
      ['count', 'int', 'abc', 'the value is not int or integer'],
      ['count', 'int', '9223372036854775808', 'the value is not int or integer'],
      ['count', 'int', '0x10', 'the value is not int or integer'],
      ['temperature', 'float', 'abc', 'the value is not float'],
      ['temperature', 'float', '1.2.3', 'the value is not float'],
      ['temperature', 'float', '1,5', 'the value is not float'],
      ['enabled', 'boolean', 'yes', 'the bool value must be true or false'],
      ['enabled', 'boolean', 'True', 'the bool value must be true or false'],
      ['enabled', 'boolean', '1', 'the bool value must be true or false'],
    ])('%s (%s) rejects %j with 400 and changes nothing', async (key, _, value, message) => {
      for (const side of ['expected', 'actual'] as const) {
        const before = snapshot();
        const error = twinError(() => twins.update(ID, { [key]: { [side]: { value } } }, 'mqtt'));
        expect(error.status).toBe(400);
        expect(error.message).toBe(message);
        expect(snapshot()).toEqual(before);
      }
      await twins.flushed();
      expect(changes).toEqual([]);
    });

    it("the stored type wins over the request's metadata.type", () => {
      const error = twinError(() => twins.update(ID, { count: { actual: { value: 'abc' }, metadata: { type: 'string' } } }, 'mqtt'));
      expect(error).toMatchObject({ status: 400, message: 'the value is not int or integer' });
      expect(twin('count')!.type).toBe('int');
    });

    it("a new key's value is checked against the type it is added with", () => {
      const error = twinError(() => twins.update(ID, { pressure: { actual: { value: 'high' }, metadata: { type: 'float' } } }, 'mqtt'));
      expect(error).toMatchObject({ status: 400, message: 'the value is not float' });
      expect(twin('pressure')).toBeUndefined();
    });

    it('an unknown metadata.type is rejected', () => {
      const error = twinError(() => twins.update(ID, { pressure: { actual: { value: '1' }, metadata: { type: 'complex' } } }, 'mqtt'));
      expect(error).toMatchObject({ status: 400, message: 'the value type is not allowed' });
    });

    it('expected or actual without a value is rejected', () => {
      expect(twinError(() => twins.update(ID, { mode: { expected: {} } }, 'mqtt')).status).toBe(400);
      expect(twinError(() => twins.update(ID, { fresh: { actual: {} } }, 'mqtt')).status).toBe(400);
      expect(twin('fresh')).toBeUndefined();
    });
  });

  describe('all or nothing', () => {
    it.each<[string, TwinUpdate]>([
      ['valid keys first', { mode: { expected: { value: 'manual' } }, fresh: { actual: { value: '1' } }, enabled: null, count: { actual: { value: 'many' } } }],
      ['invalid key first', { count: { actual: { value: 'many' } }, mode: { expected: { value: 'manual' } }, fresh: { actual: { value: '1' } } }],
      ['invalid side of a key that also has a valid side', { mode: { actual: { value: 'manual' } }, temperature: { expected: { value: '20' }, actual: { value: 'warm' } } }],
    ])('a request with one invalid key changes nothing (%s): memory, SQLite and events', async (_, update) => {
      await twins.flushed();
      const before = snapshot();
      const rowsBefore = readDb('SELECT * FROM twin ORDER BY key');
      expect(twinError(() => twins.update(ID, update, 'mqtt')).status).toBe(400);
      expect(snapshot()).toEqual(before);
      await twins.flushed();
      expect(readDb('SELECT * FROM twin ORDER BY key')).toEqual(rowsBefore);
      expect(changes).toEqual([]);
    });
  });

  describe('key and value format (checked before the device is looked up)', () => {
    it.each([
      ['with space', 'has space'],
      ['too long', 'k'.repeat(129)],
      ['empty', ''],
      ['non-ASCII', 'température'],
      ['with +', 'a+b'],
      ['with quotes', '"q"'],
    ])('key %s is rejected with 400', (_, key) => {
      const error = twinError(() => twins.update(ID, { [key]: { actual: { value: '1' } } }, 'mqtt'));
      expect(error.status).toBe(400);
      expect(error.message).toMatch(KEY_ERROR);
      expect(twinError(() => twins.update('default/ghost', { [key]: null }, 'mqtt')).status).toBe(400);
    });

    it.each([
      ['the longest key', 'k'.repeat(128)],
      ['every allowed special character', 'aZ09-_.,:/@#'],
    ])('%s is accepted', (_, key) => {
      twins.update(ID, { [key]: { actual: { value: '1' } } }, 'mqtt');
      expect(twin(key)).toBeDefined();
    });

    it.each([
      ['with space', '1 2'],
      ['with +', '+5'],
      ['too long', 'v'.repeat(513)],
      ['non-ASCII', 'naïve'],
      ['JSON', '{"a":1}'],
    ])('value %s is rejected with 400', (_, value) => {
      for (const side of ['expected', 'actual'] as const) {
        const error = twinError(() => twins.update(ID, { mode: { [side]: { value } } }, 'mqtt'));
        expect(error.status).toBe(400);
        expect(error.message).toMatch(VALUE_ERROR);
      }
      expect(twin('mode')!.expected!.value).toBe('auto');
    });

    it('the longest value is accepted', () => {
      twins.report(ID, { mode: 'v'.repeat(512) });
      expect(twin('mode')!.actual!.value).toHaveLength(512);
    });
  });

  it.each<[string, () => unknown]>([
    ['update', () => twins.update('default/ghost', { a: { actual: { value: '1' } } }, 'mqtt')],
    ['report', () => twins.report('default/ghost', { a: '1' })],
    ['desire', () => twins.desire('default/ghost', { a: '1' })],
    ['delete', () => twins.update('default/ghost', { a: null }, 'mqtt')],
  ])('%s on an unknown device is 404', (_, fn) => {
    const error = twinError(fn);
    expect(error.status).toBe(404);
    expect(error.message).toBe('update rejected due to the device is not existed');
    expect(twins.get('default/ghost')).toBeUndefined();
  });
});

describe('deletion with null', () => {
  it('deletes an optional twin: type "deleted", values gone, edge versions moved, result null, document current null', async () => {
    const change = twins.update(ID, { mode: null }, 'mqtt', 'ev-del');
    expect(twin('mode')).toEqual({
      type: 'deleted',
      optional: true,
      historySeq: 0,
      inModel: true,
      deletedAt: T0,
      expected: undefined,
      actual: undefined,
      expectedVersion: { cloud: 1, edge: 1 },
      actualVersion: { cloud: 1, edge: 1 },
    });
    expect(change.result).toEqual({ mode: null });
    expect(change.document).toEqual({
      mode: {
        last: { expected: { value: 'auto', metadata: { timestamp: T0 } }, actual: { value: 'auto', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'string' } },
        current: null,
      },
    });
    expect(twins.document(ID)).not.toHaveProperty('mode');
    await twins.flushed();
    expect(readDb('SELECT type, expected, actual FROM twin WHERE key = ?', 'mode')).toEqual([{ type: 'deleted', expected: null, actual: null }]);
  });

  it('deleting a twin with only one side moves only that version', () => {
    twins.update(ID, { temperature: null }, 'mqtt');
    expect(twin('temperature')).toMatchObject({ type: 'deleted', actualVersion: { cloud: 1, edge: 1 }, expectedVersion: undefined });
  });

  it.each<[string, () => void, string]>([
    ['a non-optional twin', () => void twins.update(ID, { mode: { optional: false } }, 'mqtt'), 'mode'],
    ['an already deleted twin', () => void twins.update(ID, { mode: null }, 'mqtt'), 'mode'],
    ['an unknown key', () => undefined, 'nothing-here'],
  ])('is ignored for %s', (_, setup, key) => {
    setup();
    const before = snapshot();
    const change = twins.update(ID, { [key]: null }, 'mqtt');
    expect(change.result).toEqual({});
    expect(change.document).toEqual({});
    expect(snapshot()).toEqual(before);
  });

  it('is ignored for a twin that has never had a value (no version on either side, KubeEdge dealTwinDelete §3.7)', () => {
    expect(view('count')).toMatchObject({ expectedVersion: undefined, actualVersion: undefined });
    const change = twins.update(ID, { count: null }, 'mqtt');
    expect(change.result).toEqual({});
    expect(twin('count')!.type).toBe('int');
  });

  it('a value for a deleted twin revives it; document.last is null', () => {
    twins.update(ID, { mode: null }, 'mqtt');
    const revived = twins.update(ID, { mode: { actual: { value: 'eco' } } }, 'mqtt');
    expect(twin('mode')).toMatchObject({ type: 'string', actual: { value: 'eco' }, expected: undefined, actualVersion: { cloud: 1, edge: 2 } });
    expect(revived.document.mode!.last).toBeNull();
    expect(revived.result.mode).toMatchObject({ actual: { value: 'eco' }, metadata: { type: 'string' } });

    twins.update(ID, { temperature: null }, 'mqtt');
    twins.update(ID, { temperature: { actual: { value: '7' }, metadata: { type: 'int' } } }, 'mqtt');
    expect(twin('temperature')).toMatchObject({ type: 'int', actual: { value: '7' } });
  });
});

describe('optional', () => {
  it('changes from true to false only', () => {
    const change = twins.update(ID, { mode: { optional: false } }, 'mqtt');
    expect(change.result).toEqual({ mode: { optional: false, metadata: { type: 'string' } } });
    expect(change.document.mode).toMatchObject({ last: { optional: true }, current: { optional: false } });
    expect(twin('mode')!.optional).toBe(false);

    const back = twins.update(ID, { mode: { optional: true } }, 'mqtt');
    expect(back.result).toEqual({});
    expect(twin('mode')!.optional).toBe(false);

    // A value with optional:true keeps it false.
    twins.update(ID, { mode: { actual: { value: 'x' }, optional: true } }, 'mqtt');
    expect(twin('mode')!.optional).toBe(false);
  });
});

describe('delta', () => {
  it('lists every twin with an expected value, and as delta those whose actual differs', () => {
    // enabled: expected "true", no actual → delta; mode: in sync → twin only; temperature: no expected → absent.
    expect(twins.delta(ID)).toEqual({
      twin: {
        enabled: { expected: { value: 'true', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'boolean' } },
        mode: { expected: { value: 'auto', metadata: { timestamp: T0 } }, actual: { value: 'auto', metadata: { timestamp: T0 } }, optional: true, metadata: { type: 'string' } },
      },
      delta: { enabled: 'true' },
    });
  });

  it('is part of every change, even when the change touched other keys', () => {
    const change = twins.report(ID, { temperature: '30' });
    expect(change.delta).toEqual(twins.delta(ID));
    expect(change.delta!.delta).toEqual({ enabled: 'true' });
  });

  it('is undefined once every expected value is reported', () => {
    const change = twins.report(ID, { enabled: 'true' });
    expect(change.delta).toBeUndefined();
    expect(twins.delta(ID)).toBeUndefined();
  });

  it('follows desired changes and leaves deleted twins out', () => {
    twins.report(ID, { enabled: 'true' });
    expect(twins.desire(ID, { mode: 'eco' }).delta).toMatchObject({ delta: { mode: 'eco' } });
    expect(twins.update(ID, { mode: null }, 'mqtt').delta).toBeUndefined();
  });

  it('is undefined for an unknown device', () => {
    expect(twins.delta('default/ghost')).toBeUndefined();
  });
});

describe('setState', () => {
  it.each([
    ['online', '2024-01-02 03:04:05'],
    ['Online', '2024-01-02 03:04:05'],
    ['ok', '2024-01-02 03:04:05'],
    ['OK', '2024-01-02 03:04:05'],
    ['offline', ''],
    ['OFFLINE', ''],
    ['unknown', ''],
    ['unhealthy', ''],
    ['disconnected', ''],
  ])('accepts %j, keeps its case, last_online %j', async (state, lastOnline) => {
    const seen: string[] = [];
    twins.onState(({ device }) => seen.push(device.state));
    const device = twins.setState(ID, state, 'mqtt');
    expect(device).toMatchObject({ state, lastOnline });
    expect(twins.get(ID)).toMatchObject({ state, lastOnline });
    await twins.flushed();
    expect(seen).toEqual([state]);
    expect(readDb('SELECT state, last_online FROM device WHERE id = ?', ID)).toEqual([{ state, last_online: lastOnline }]);
  });

  it('clears last_online when the device leaves online/ok', () => {
    twins.setState(ID, 'online', 'mqtt');
    expect(twins.get(ID)!.lastOnline).toBe('2024-01-02 03:04:05');
    twins.setState(ID, 'offline', 'mqtt');
    expect(twins.get(ID)!.lastOnline).toBe('');
  });

  it.each(['broken', '', 'on line'])('rejects the unknown state %j with 400', (state) => {
    const error = twinError(() => twins.setState(ID, state, 'mqtt'));
    expect(error.status).toBe(400);
    expect(twins.get(ID)!.state).toBe('unknown');
  });

  it('is 404 for an unknown device', () => {
    expect(twinError(() => twins.setState('default/ghost', 'online', 'mqtt')).status).toBe(404);
  });
});

describe('bounded history', () => {
  const reportAt = (values: string[], step = 1) =>
    values.forEach((value, i) => {
      vi.setSystemTime(T0 + (i + 1) * step);
      twins.report(ID, { count: value });
    });

  it('keeps the last N reported values, newest first', async () => {
    db.close();
    open(3);
    reportAt(['1', '2', '3', '4', '5']);
    await twins.flushed();
    expect(twins.history(ID, 'count')).toEqual([
      { value: '5', timestamp: T0 + 5 },
      { value: '4', timestamp: T0 + 4 },
      { value: '3', timestamp: T0 + 3 },
    ]);
    expect(twins.history(ID, 'count', 2).map((h) => h.value)).toEqual(['5', '4']);
    const rows = `SELECT COUNT(*) AS n FROM twin_history WHERE id / ${1 << 14} = (SELECT id FROM twin WHERE device_id = ? AND key = ?)`;
    expect(readDb<{ n: number }>(rows, ID, 'count')).toEqual([{ n: 3 }]);
  });

  it('keeps newest-first order for values reported within the same millisecond', async () => {
    db.close();
    open(3);
    reportAt(['1', '2', '3', '4'], 0);
    await twins.flushed();
    expect(twins.history(ID, 'count').map((h) => h.value)).toEqual(['4', '3', '2']);
    expect(twins.history(ID, 'count', 1).map((h) => h.value)).toEqual(['4']);
  });

  it('records reported values only (not desired, not empty), per key', async () => {
    reportAt(['1', '2']);
    twins.desire(ID, { count: '9' });
    twins.report(ID, { mode: '' });
    twins.report(ID, { temperature: '20.5' });
    await twins.flushed();
    expect(twins.history(ID, 'count').map((h) => h.value)).toEqual(['2', '1']);
    expect(twins.history(ID, 'temperature').map((h) => h.value)).toEqual(['20.5']);
    expect(twins.history(ID, 'mode')).toEqual([]);
    expect(twins.history(ID, 'enabled')).toEqual([]);
  });
});

describe('persistence', () => {
  it('after closing the store, a new TwinStore and Twins on the same file hold everything', async () => {
    twins.update(ID, { fresh: { expected: { value: '5' }, metadata: { type: 'int' }, optional: false } }, 'mqtt');
    vi.setSystemTime(T0 + 10);
    twins.report(ID, { temperature: '22.5', count: '3' });
    vi.setSystemTime(T0 + 20);
    twins.report(ID, { count: '4' });
    twins.update(ID, { mode: null }, 'mqtt');
    twins.setState(ID, 'Online', 'mqtt');
    addSensor('factory/other');
    twins.removeDevice('factory/other');
    addSensor('factory/kept');

    const before = twins.list().map((d) => structuredClone(d));
    const delta = twins.delta(ID);
    await twins.flushed();
    const history = twins.history(ID, 'count');
    db.close();

    open();
    expect(twins.list().map((d) => d.id).sort()).toEqual(['default/sensor', 'factory/kept']);
    for (const device of before) expect(twins.get(device.id)).toEqual(device);
    expect(twins.get(ID)).toMatchObject({ state: 'Online', lastOnline: '2024-01-02 03:04:05', description: 'test sensor', managed: true });
    expect(twin('mode')!.type).toBe('deleted');
    expect(twin('fresh')).toMatchObject({ type: 'int', optional: false, expected: { value: '5', timestamp: T0 }, expectedVersion: { cloud: 0, edge: 1 } });
    expect(twins.history(ID, 'count')).toEqual(history);
    expect(history.map((h) => h.value)).toEqual(['4', '3']);
    expect(twins.delta(ID)).toEqual(delta);

    // Versions and history go on from where they were.
    vi.setSystemTime(T0 + 30);
    twins.report(ID, { count: '5' });
    expect(twin('count')!.actualVersion).toEqual({ cloud: 0, edge: 3 });
    await twins.flushed();
    expect(twins.history(ID, 'count').map((h) => h.value)).toEqual(['5', '4', '3']);
  });

  it('the rows are in SQLite once flushed', async () => {
    twins.report(ID, { count: '11' });
    await twins.flushed();
    expect(readDb('SELECT type, optional, actual, actual_ts, actual_cloud, actual_edge, history_seq FROM twin WHERE device_id = ? AND key = ?', ID, 'count')).toEqual([
      { type: 'int', optional: 1, actual: '11', actual_ts: T0, actual_cloud: 0, actual_edge: 1, history_seq: 1 },
    ]);
    expect(readDb('SELECT id, namespace, name, description, state, managed FROM device')).toEqual([
      { id: ID, namespace: 'default', name: 'sensor', description: 'test sensor', state: 'unknown', managed: 1 },
    ]);
  });

  it('a removed device is gone after reopening, twins and history included', async () => {
    twins.report(ID, { count: '1' });
    twins.removeDevice(ID);
    await twins.flushed();
    db.close();
    open();
    expect(twins.get(ID)).toBeUndefined();
    expect(readDb('SELECT * FROM twin')).toEqual([]);
    expect(readDb('SELECT * FROM twin_history')).toEqual([]);
  });
});
