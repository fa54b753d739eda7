/** Device twin types as KubeEdge's devicetwin puts them on the wire (edge/pkg/devicetwin/dttype). */
import { AgentError } from '../errors.js';

export interface TwinVersion {
  cloud: number;
  edge: number;
}

export interface TwinValue {
  value?: string;
  metadata?: { timestamp?: number };
}

export interface MsgTwin {
  expected?: TwinValue;
  actual?: TwinValue;
  optional?: boolean;
  metadata?: { type?: string };
  expected_version?: TwinVersion;
  actual_version?: TwinVersion;
}

export const DEVICE_STATES = ['online', 'offline', 'ok', 'unknown', 'unhealthy', 'disconnected'] as const;
export type DeviceState = (typeof DEVICE_STATES)[number];

export interface TwinProperty {
  type: string;
  optional: boolean;
  expected?: { value: string; timestamp: number };
  actual?: { value: string; timestamp: number };
  expectedVersion?: TwinVersion;
  actualVersion?: TwinVersion;
  /** Counts reported values; the history keeps the last `historySize` of them. */
  historySeq: number;
  /** Defined by the device's DeviceModel (created from its seeds); the other keys are bounded by `twin.maxExtraProperties`. */
  inModel: boolean;
  /** When a `deleted` twin was deleted (wall clock, ms): a tombstone not in the model is purged `twin.tombstoneTtlMs` after it. */
  deletedAt?: number;
  /** What the device answered to the last write of a desired value it refused, until a write succeeds; kept in memory only. */
  writeError?: string;
}

export interface DeviceAttribute {
  value: string;
  optional?: boolean;
  metadata?: { type?: string };
}

export interface DeviceRecord {
  id: string;
  namespace: string;
  name: string;
  description?: string;
  /** As reported, case kept (EdgeCore stores the original case). */
  state: string;
  /** Why the device is in that state (the mapper's last error); kept in memory only. */
  stateReason?: string;
  lastOnline: string;
  attributes: Record<string, DeviceAttribute>;
  managed: boolean;
  twin: Map<string, TwinProperty>;
}

export const DELETED = 'deleted';

/** The twin as EdgeCore shows it to devices: versions stripped, deleted twins left out. */
export function toMsgTwin(p: TwinProperty, withVersions = false): MsgTwin {
  const msg: MsgTwin = {};
  if (p.expected) msg.expected = { value: p.expected.value, metadata: { timestamp: p.expected.timestamp } };
  if (p.actual) msg.actual = { value: p.actual.value, metadata: { timestamp: p.actual.timestamp } };
  msg.optional = p.optional;
  msg.metadata = { type: p.type };
  if (withVersions) {
    if (p.expectedVersion) msg.expected_version = p.expectedVersion;
    if (p.actualVersion) msg.actual_version = p.actualVersion;
  }
  return msg;
}

/** A twin request refused, with EdgeCore's Result code (400 bad request, 404 unknown device, 500 storage; 413 a twin too large to answer), which is also its HTTP status. */
export class TwinError extends AgentError {
  constructor(status: 400 | 404 | 409 | 413 | 500, message: string) {
    super(status, message);
  }
}
