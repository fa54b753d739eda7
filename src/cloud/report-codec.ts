/**
 * How a queued report is stored: a twin report (`{event_id?, timestamp, twin}` with twins as
 * toMsgTwin builds them) as a compact blob, anything else (state reports, rows from before the
 * compact form) as its JSON text. An hour of 1000 updates a second must fit the default quota:
 * as JSON a single-property report is ~185 bytes, compact ~20, with the JSON field names, the
 * resource and property names (numbers into OutboxNames), the event id (derived from the message
 * id when the twin gave none) and all but one timestamp (the others as differences) left out.
 *
 * Compact blob: FORMAT_TWIN, resource name id, flags (HAS_EVENT_ID), [event id], timestamp,
 * property count, then per property: name id, the fields present (bits below), [type name id],
 * [expected value, its timestamp - the report's], [actual likewise], [expected_version cloud,
 * edge], [actual_version cloud, edge]. Decoding writes the message content JSON directly, its keys
 * in the order toMsgTwin gives them.
 */
import type { MsgTwin, TwinVersion } from '../twin/types.js';
import { ByteFormatError, ByteReader, ByteWriter } from './bytes.js';
import type { OutboxNames } from './outbox-names.js';

/** The content of a report as uplink.ts stages it; without `event_id`, one derived from its message id is sent. */
export interface ReportContent {
  event_id?: string;
  timestamp: number;
  [field: string]: unknown;
}

/** A `cloud_outbox` row: compact (resource '', a blob content) or JSON (resource and content as text). */
export interface StoredReport {
  resource: string;
  content: Uint8Array | string;
}

/**
 * What a row costs on disk besides its resource and content: SQLite's 2-byte cell pointer, payload
 * length, rowid and record header, 10 to 14 bytes (rows under 8 KB, seqs under 2^28), counted as
 * 12; page headers and the unused ends of pages add ~2 %. The same in `STORED_SIZE_SQL`, so that
 * sizes summed at start and counted since agree.
 */
const ROW_OVERHEAD = 12;
export const STORED_SIZE_SQL = `${ROW_OVERHEAD} + length(CAST(resource AS BLOB)) + length(CAST(content AS BLOB))`;

export function storedSize(row: StoredReport): number {
  const content = typeof row.content === 'string' ? Buffer.byteLength(row.content) : row.content.length;
  return ROW_OVERHEAD + Buffer.byteLength(row.resource) + content;
}

const FORMAT_TWIN = 1;
const HAS_EVENT_ID = 1;

const EXPECTED = 1;
const ACTUAL = 2;
const HAS_OPTIONAL = 4;
const OPTIONAL_TRUE = 8;
const HAS_TYPE = 16;
const EXPECTED_VERSION = 32;
const ACTUAL_VERSION = 64;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const keyCount = (value: object) => Object.keys(value).length;

/** A value as toMsgTwin writes it: exactly `{value, metadata: {timestamp}}`. */
function isPlainValue(value: unknown): value is { value: string; metadata: { timestamp: number } } {
  return (
    isObject(value) &&
    keyCount(value) === 2 &&
    typeof value.value === 'string' &&
    isObject(value.metadata) &&
    keyCount(value.metadata) === 1 &&
    Number.isSafeInteger(value.metadata.timestamp)
  );
}

const isPlainVersion = (version: unknown): version is TwinVersion =>
  isObject(version) && keyCount(version) === 2 && isCount(version.cloud) && isCount(version.edge);

const TWIN_KEYS = new Set(['expected', 'actual', 'optional', 'metadata', 'expected_version', 'actual_version']);

export class ReportCodec {
  private readonly writer = new ByteWriter();
  private readonly json = new ByteWriter(4096);

  constructor(private readonly names: OutboxNames) {}

  /** The row to store for a report; `eventId` names a report staged without one, in the JSON form. */
  encode(resource: string, content: ReportContent, eventId: () => string): StoredReport {
    const compact = this.compact(resource, content);
    if (compact) return { resource: '', content: compact };
    const { event_id, ...rest } = content;
    return { resource, content: JSON.stringify({ event_id: event_id ?? eventId(), ...rest }) };
  }

  /** The compact form, or undefined for a content it cannot hold exactly (checked before a name is added). */
  private compact(resource: string, content: ReportContent): Buffer | undefined {
    const { event_id, timestamp, twin } = content;
    const fields = keyCount(content);
    if (fields !== (event_id === undefined ? 2 : 3) || (event_id !== undefined && typeof event_id !== 'string')) return undefined;
    if (!isCount(timestamp) || !isObject(twin)) return undefined;
    const entries = Object.entries(twin) as Array<[string, MsgTwin]>;
    if (!entries.every(([, msg]) => fits(msg))) return undefined;
    const w = this.writer.reset();
    w.byte(FORMAT_TWIN);
    w.uint(this.names.id(resource));
    w.byte(event_id === undefined ? 0 : HAS_EVENT_ID);
    if (event_id !== undefined) w.string(event_id);
    w.uint(timestamp);
    w.uint(entries.length);
    for (const [name, msg] of entries) {
      w.uint(this.names.id(name));
      let bits = 0;
      if (msg.expected) bits |= EXPECTED;
      if (msg.actual) bits |= ACTUAL;
      if (msg.optional !== undefined) bits |= HAS_OPTIONAL | (msg.optional ? OPTIONAL_TRUE : 0);
      if (msg.metadata) bits |= HAS_TYPE;
      if (msg.expected_version) bits |= EXPECTED_VERSION;
      if (msg.actual_version) bits |= ACTUAL_VERSION;
      w.byte(bits);
      if (msg.metadata) w.uint(this.names.id(msg.metadata.type!));
      for (const value of [msg.expected, msg.actual]) {
        if (!value) continue;
        w.string(value.value!);
        w.int(value.metadata!.timestamp! - timestamp);
      }
      for (const version of [msg.expected_version, msg.actual_version]) {
        if (!version) continue;
        w.uint(version.cloud);
        w.uint(version.edge);
      }
    }
    return w.bytes();
  }

  /**
   * The resource and content JSON of a stored report; `eventId` names a compact one staged without
   * an event id. Throws a ByteFormatError for a row it cannot read (a damaged page, a name lost).
   * The JSON is written into one reused buffer and read out once: a drain decodes a report per
   * message, and a string built of pieces left the garbage collector half of the drain's work.
   */
  decode(row: StoredReport, eventId: () => string): { resource: string; content: string } {
    if (typeof row.content === 'string') {
      if (row.resource === '') throw new ByteFormatError('a JSON report without its resource');
      return { resource: row.resource, content: row.content };
    }
    const r = new ByteReader(row.content);
    if (r.byte() !== FORMAT_TWIN) throw new ByteFormatError('unknown report format');
    const resource = this.names.nameOf(r.uint());
    if (resource === undefined) throw new ByteFormatError('unknown resource');
    const flags = r.byte();
    const id = flags & HAS_EVENT_ID ? r.string() : eventId();
    const timestamp = r.uint();
    const count = r.uint();
    const w = this.json.reset();
    w.text('{"event_id":');
    w.text(JSON.stringify(id));
    w.text(`,"timestamp":${timestamp},"twin":{`);
    for (let i = 0; i < count; i++) {
      if (i > 0) w.text(',');
      w.text(this.name(r.uint()));
      w.text(':{');
      this.twin(r, w, timestamp);
      w.text('}');
    }
    w.text('}}');
    if (!r.done) throw new ByteFormatError('bytes left over');
    return { resource, content: w.toString() };
  }

  private name(id: number): string {
    const json = this.names.jsonOf(id);
    if (json === undefined) throw new ByteFormatError('unknown name');
    return json;
  }

  /** One MsgTwin's fields as JSON members, in toMsgTwin's order. */
  private twin(r: ByteReader, w: ByteWriter, timestamp: number): void {
    const bits = r.byte();
    const type = bits & HAS_TYPE ? this.name(r.uint()) : undefined;
    let first = true;
    const field = (name: string) => {
      w.text(first ? name : `,${name}`);
      first = false;
    };
    const value = () => {
      w.text('{"value":');
      w.text(JSON.stringify(r.string()));
      w.text(`,"metadata":{"timestamp":${timestamp + r.int()}}}`);
    };
    const version = () => w.text(`{"cloud":${r.uint()},"edge":${r.uint()}}`);
    if (bits & EXPECTED) {
      field('"expected":');
      value();
    }
    if (bits & ACTUAL) {
      field('"actual":');
      value();
    }
    if (bits & HAS_OPTIONAL) field(bits & OPTIONAL_TRUE ? '"optional":true' : '"optional":false');
    if (type !== undefined) {
      field('"metadata":{"type":');
      w.text(type);
      w.text('}');
    }
    if (bits & EXPECTED_VERSION) {
      field('"expected_version":');
      version();
    }
    if (bits & ACTUAL_VERSION) {
      field('"actual_version":');
      version();
    }
  }
}

/** Whether a twin has only fields of the shapes the compact form holds, so that decoding gives it back exactly. */
function fits(msg: MsgTwin): boolean {
  if (!isObject(msg) || !Object.keys(msg).every((key) => TWIN_KEYS.has(key))) return false;
  if (msg.expected !== undefined && !isPlainValue(msg.expected)) return false;
  if (msg.actual !== undefined && !isPlainValue(msg.actual)) return false;
  if (msg.optional !== undefined && typeof msg.optional !== 'boolean') return false;
  if (msg.metadata !== undefined && !(isObject(msg.metadata) && keyCount(msg.metadata) === 1 && typeof msg.metadata.type === 'string')) return false;
  if (msg.expected_version !== undefined && !isPlainVersion(msg.expected_version)) return false;
  return msg.actual_version === undefined || isPlainVersion(msg.actual_version);
}
