/** What the power-cut scenario (scenarios/power-cut.ts, in the VM) and its test (test/db/power-cut-faults.test.ts) share. */
import { SYNCHRONOUS_MODES, type Synchronous } from '../../src/db/synchronous.js';

/** One agent per mode, each on a disk of its own: the first disk image is /dev/vda, the next /dev/vdb. */
export const MODES = SYNCHRONOUS_MODES;
export const disk = (mode: Synchronous) => `/dev/vd${String.fromCharCode('a'.charCodeAt(0) + MODES.indexOf(mode))}`;

/** The agent's data dir, from the root of its disk's filesystem. */
export const DATA_ON_DISK = '/data';

/** The device of test/fixtures/profiles whose twin the publishers update, one key each. */
export const DEVICE = 'default/sensor-01';
export const PUBLISHERS = 8;
export const key = (publisher: number) => `burst-${publisher}`;

/** Lines `key value` of every acknowledged update, in $VM_IO. */
export const ackFile = (mode: Synchronous) => `acks-${mode}.txt`;

/** The scenario prints this once both agents have acknowledged enough updates; the host cuts the power at it. */
export const CUT_POWER_LINE = 'power-cut: ready, cut the power';
