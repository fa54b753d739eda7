/**
 * In the VM, for test/db/power-cut-faults.test.ts: one agent per `twin.synchronous` mode, each
 * with its data dir on an ext4 disk of its own, takes MQTT QoS 1 twin updates from publishers
 * that record every acknowledged value in $VM_IO (the 9p share: on the host once written, so the
 * record outlives the power cut). Once both agents have acknowledged enough it prints the line at
 * which the host cuts the power, and goes on publishing until the power goes.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Synchronous } from '../../../src/db/synchronous.js';
import { spawnAgent } from '../../support/agent-process.js';
import { connectClient } from '../../support/mqtt.js';
import { ackFile, CUT_POWER_LINE, DATA_ON_DISK, DEVICE, disk, key, MODES, PUBLISHERS } from '../power-cut.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
/** Acknowledged updates per agent before the power may go: `normal` has then synced some and not others. */
const ACKS_BEFORE_CUT = 400;
/** Acknowledgements go out to the share in batches this far apart: one 9p write each, not one per update. */
const RECORD_EVERY_MS = 20;

/** The acknowledged updates of one agent, written out to its file in $VM_IO. */
class AckRecord {
  private lines: string[] = [];
  recorded = 0;

  constructor(private readonly file: string) {}

  add(key: string, value: number): void {
    this.lines.push(`${key} ${value}\n`);
  }

  writeOut(): void {
    if (this.lines.length === 0) return;
    appendFileSync(this.file, this.lines.join(''));
    this.recorded += this.lines.length;
    this.lines = [];
  }
}

/** Starts the mode's agent on its disk and publishes to it until the power goes. */
async function publishTo(mode: Synchronous, record: AckRecord): Promise<never> {
  const mount = `/tmp/power-cut/${mode}`;
  mkdirSync(mount, { recursive: true });
  execFileSync('mount', [disk(mode), mount]);
  const agent = await spawnAgent(['--data', mount + DATA_ON_DISK, '--profiles', join(ROOT, 'test/fixtures/profiles'), '--node', 'test-node'], {
    env: { EDGE_AGENT_TWIN__SYNCHRONOUS: mode, EDGE_AGENT_RUN_DIR: `/run/edge-agent-${mode}` },
  });
  console.log(`power-cut: ${mode} agent ready after ${Math.round(agent.readyAfterMs)} ms`);
  const client = await connectClient(agent.mqttUrl, `power-cut-${mode}`);
  // Each publisher sends its key's next value only once the last is acknowledged: the twin must hold the last acknowledged one, or the one after.
  const publisher = async (publisher: number): Promise<never> => {
    for (let value = 1; ; value++) {
      const twin = { [key(publisher)]: { actual: { value: String(value) }, metadata: { type: 'int' } } };
      await client.publishAsync(`$hw/events/device/${DEVICE}/twin/update`, JSON.stringify({ event_id: `${publisher}-${value}`, timestamp: Date.now(), twin }), { qos: 1 });
      record.add(key(publisher), value);
    }
  };
  return Promise.race(Array.from({ length: PUBLISHERS }, (_, p) => publisher(p)));
}

try {
  execFileSync('modprobe', ['-a', 'virtio_blk', 'ext4']);
  const records = MODES.map((mode) => new AckRecord(join(process.env.VM_IO ?? '/tmp', ackFile(mode))));
  let announced = false;
  setInterval(() => {
    for (const record of records) record.writeOut();
    if (announced || records.some((record) => record.recorded < ACKS_BEFORE_CUT)) return;
    announced = true;
    console.log(CUT_POWER_LINE);
  }, RECORD_EVERY_MS);
  await Promise.race(MODES.map((mode, i) => publishTo(mode, records[i]!)));
} catch (error) {
  console.log(`power-cut: failed: ${(error as Error).stack}`);
  process.exit(1);
}
