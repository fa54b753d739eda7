/**
 * The CloudHub-compatible server as a process of its own, for a VM scenario that runs it in
 * another network namespace (behind the APs): `node cloudhub-process.js <address>`. It prints
 * one JSON line with its token and ports, then answers commands on stdin, one JSON line each:
 *   `device <node>`  sends a DeviceModel and a Device (a virtual counter reported to the cloud)
 *   `reports`        the counter's edge versions received (each message once), and the links seen
 */
import { createInterface } from 'node:readline';
import { reportedVersions } from '../support/cloudhub/reports.js';
import { deviceMessage, deviceModelMessage, startCloudHub } from '../support/cloudhub/server.js';

const COUNTER_REPORT = 'device/default/counter-01/twin/edge_updated';

const hub = await startCloudHub({ host: process.argv[2] ?? '127.0.0.1' });
console.log(JSON.stringify({ token: hub.token, httpsPort: hub.httpsPort, wsPort: hub.wsPort }));

function model() {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'DeviceModel',
    metadata: { name: 'counter', namespace: 'default' },
    spec: { protocol: 'virtualProtocol', properties: [{ name: 'count', type: 'INT', accessMode: 'ReadOnly' }] },
  };
}

function device(node: string) {
  return {
    apiVersion: 'devices.kubeedge.io/v1beta1',
    kind: 'Device',
    metadata: { name: 'counter-01', namespace: 'default' },
    spec: {
      deviceModelRef: { name: 'counter' },
      nodeName: node,
      protocol: { protocolName: 'virtualProtocol', configData: {} },
      properties: [{ name: 'count', collectCycle: 200, reportCycle: 200, reportToCloud: true, visitors: { protocolName: 'virtualProtocol', configData: { function: 'counter' } } }],
    },
  };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, argument] = line.trim().split(' ');
  if (command === 'device') {
    hub.send(deviceModelMessage('insert', model()));
    hub.send(deviceMessage('insert', device(argument!)));
    console.log(JSON.stringify({ sent: 'device' }));
  } else if (command === 'reports') {
    console.log(JSON.stringify({ ...reportedVersions(hub.received, COUNTER_REPORT, 'count'), connections: hub.connections, handshakes: hub.handshakes.length, errors: hub.errors }));
  } else {
    console.log(JSON.stringify({ error: `unknown command ${command}` }));
  }
});
process.on('SIGTERM', () => void hub.stop().then(() => process.exit(0)));
