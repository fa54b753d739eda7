/** `npm run bench [-- NAME…]`: runs the named benchmarks, or all but the named-only ones, each printing one JSON line. */
import { ble } from './ble/host.js';
import { cloudReplay } from './cloud-replay/replay.js';
import { footprint } from './footprint.js';
import { migration } from './migration.js';
import { modbusPoll } from './modbus-poll.js';
import { onDemand } from './on-demand.js';
import { packageBench } from './package.js';
import { paths } from './paths/host.js';
import { startup } from './startup.js';
import { twinIngest } from './twin-ingest.js';
import { wifi } from './wifi/host.js';

const benchmarks: Record<string, () => Promise<void>> = {
  'twin-ingest': twinIngest,
  footprint,
  startup,
  'modbus-poll': modbusPoll,
  'cloud-replay': cloudReplay,
  wifi,
  ble,
  migration,
  'on-demand': onDemand,
  package: packageBench,
  paths,
};
/** Run only when named: `package` builds three packages and debootstraps emulated roots (root, minutes). */
const NAMED_ONLY = new Set(['package']);

const names = process.argv.slice(2);
const unknown = names.filter((n) => !benchmarks[n]);
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; known: ${Object.keys(benchmarks).join(', ')}`);
  process.exit(2);
}
for (const name of names.length > 0 ? names : Object.keys(benchmarks).filter((n) => !NAMED_ONLY.has(n))) await benchmarks[name]!();
