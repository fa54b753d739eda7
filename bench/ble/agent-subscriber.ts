/**
 * The measured side of bench/ble: the whole agent with one BLE device whose `seq` property is
 * the notifications' sequence number; a value arrives when its twin change is committed.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { startAgent } from '../../src/agent.js';
import { resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { TEMPERATURE_DATA } from '../../test/vm/ble-testbed.js';
import { SEQUENCE_BYTES, serveArrivals, type Arrivals } from './arrivals.js';

const PROFILES = '/tmp/bench-ble-profiles';
const DATA = '/tmp/bench-ble-data';
const DEVICE = 'default/bench-tag-01';

rmSync(PROFILES, { recursive: true, force: true });
rmSync(DATA, { recursive: true, force: true });
mkdirSync(PROFILES, { recursive: true });
writeFileSync(
  `${PROFILES}/bench-tag.yaml`,
  `apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: bench-tag, namespace: default}
spec:
  protocol: bluetooth
  properties:
    - {name: seq, type: INT, accessMode: ReadOnly}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: bench-tag-01, namespace: default}
spec:
  deviceModelRef: {name: bench-tag}
  protocol:
    protocolName: bluetooth
    configData: {macAddress: "${process.env.BENCH_PERIPHERAL!}"}
  properties:
    - name: seq
      collectCycle: 60000
      reportCycle: 1
      visitors:
        protocolName: bluetooth
        configData:
          characteristicUUID: ${TEMPERATURE_DATA}
          dataConverter: ${JSON.stringify(SEQUENCE_BYTES)}
`,
);

const config = resolveConfig({
  flags: { node: 'bench-vm', dataDir: DATA, profiles: [PROFILES], mqtt: { port: 0 }, api: { port: 0 }, log: { level: 'warn' } },
});
const agent = await startAgent(config, createLogger(config.log.level));
let received: Arrivals = [];
agent.twins.onChange((change) => {
  const t = process.hrtime.bigint().toString();
  const value = change.result.seq?.actual?.value;
  if (change.deviceId === DEVICE && value !== undefined) received.push([Number(value), t]);
});
serveArrivals(
  () => received.splice(0),
  () => agent.stop(),
);
