/**
 * In the VM: a radio that can be on two channels at once. Two identities go to the two best
 * APs, on different channels; an AP with a wrong passphrase configured is tried and avoided;
 * an MPTCP transfer runs over both identities; then an AP vanishes and its identity moves.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createLogger } from '../../../src/log.js';
import { WpaWifiManager } from '../../../src/wifi/wpa-supplicant.js';
import { wifiConfig } from '../../../src/wifi/config.js';
import { TrafficPaths } from '../../../src/wifi/paths.js';
import { startScenario, writeResult } from '../scenario.js';
import { AP_NAMESPACE, waitForWifi, WifiTestbed } from '../wifi-testbed.js';

const log = createLogger(process.env.LOG_LEVEL ?? 'info');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const MPTCP_SERVER = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1); print("listening", flush=True)
s.settimeout(60)  # a client that never connects must not hang the scenario either
try:
    c, peer = s.accept()
except socket.timeout:
    print("no connection", flush=True); raise SystemExit(1)
total = 0
c.settimeout(30)  # a lost DATA_FIN must not hang the scenario: report what arrived
while True:
    try:
        b = c.recv(65536)
    except socket.timeout:
        print("timeout after", total, flush=True); break
    if not b: break
    total += len(b)
print("received", total, flush=True)
`;

const MPTCP_CLIENT = `
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect((sys.argv[1], 5201))
chunk = b"x" * 65536
end = time.time() + float(sys.argv[2])
while time.time() < end: s.sendall(chunk)
s.close()
`;

const { result, step } = startScenario('wifi-multichannel', 420_000);
const testbed = new WifiTestbed({ apRadios: 4, channels: 2 });
try {
  // apD is the most attractive (no load) but the agent is given the wrong passphrase for it.
  await testbed.startAp({ ssid: 'apA', channel: 1, subnet: 1, utilization: 20 });
  await testbed.startAp({ ssid: 'apB', channel: 6, subnet: 2, passphrase: 'correct-horse', utilization: 20 });
  await testbed.startAp({ ssid: 'apC', channel: 1, subnet: 3, utilization: 150 });
  await testbed.startAp({ ssid: 'apD', channel: 6, subnet: 4, passphrase: 'the-real-one', utilization: 0 });
  result.aps = Object.fromEntries([...testbed.aps].map(([ssid, ap]) => [ssid, ap.bssid]));

  const config = wifiConfig({
    enabled: true,
    radio: testbed.stationInterface,
    identities: 2,
    networks: [{ ssid: 'apA' }, { ssid: 'apB', passphrase: 'correct-horse' }, { ssid: 'apC' }, { ssid: 'apD', passphrase: 'not-the-real-one' }],
    evaluateIntervalMs: 1000,
    scanIntervalMs: 5000,
    // Migration streams not sensitive here: MPTCP may pool over the open network too.
    sensitive: ['cloud', 'peers'],
  });
  const manager = await WpaWifiManager.start(config, 'edge-vm', '/run/edge-agent', log);
  const started = performance.now();
  const wrongKey = await waitForWifi(manager, 'the wrong passphrase to be noticed', (s) => s.aps.some((ap) => ap.ssid === 'apD' && ap.error !== undefined));
  result.wrongKeyError = wrongKey.aps.find((ap) => ap.ssid === 'apD')!.error;
  const ready = await waitForWifi(manager, 'two identities addressed', (s) => s.identities.every((i) => i.status === 'connected' && i.address));
  result.associateMs = Math.round(performance.now() - started);
  result.ready = ready;
  result.macs = execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' });

  step('mptcp');
  // MPTCP: a transfer from the station side to the AP side, subflows over both identities.
  execFileSync('ip', ['netns', 'exec', AP_NAMESPACE, 'ip', 'mptcp', 'limits', 'set', 'subflow', '4', 'add_addr_accepted', '4']);
  const server = spawn('ip', ['netns', 'exec', AP_NAMESPACE, '/usr/bin/python3', '-c', MPTCP_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  // Taken now: the server may end before the client's exit has been seen.
  const serverExited = new Promise((resolve) => server.once('exit', resolve));
  let serverOut = '';
  server.stdout.on('data', (chunk: Buffer) => (serverOut += chunk.toString()));
  while (!serverOut.includes('listening')) await sleep(50);
  step('mptcp client');
  const paths = new TrafficPaths(config);
  paths.update({ candidates: manager.paths() });
  result.sensitiveSource = paths.place('cloud');
  const apIdentity = ready.identities.find((i) => i.ssid === 'apA')!;
  const client = spawn('/usr/bin/python3', ['-c', MPTCP_CLIENT, '10.0.1.1', '4'], { stdio: 'inherit' });
  const clientExited = new Promise((resolve) => client.once('exit', resolve));
  await sleep(2000);
  result.subflows = execFileSync('ss', ['-tniH', 'state', 'established', 'dport', '5201'], { encoding: 'utf8' });
  result.mptcpEndpoints = execFileSync('ip', ['mptcp', 'endpoint', 'show'], { encoding: 'utf8' });
  result.mptcpClientExit = await clientExited;
  step('mptcp client done');
  // A client that failed leaves the server waiting for a connection that will not come.
  if (result.mptcpClientExit !== 0) server.kill();
  await serverExited;
  result.mptcpReceived = Number(/received (\d+)/.exec(serverOut)?.[1] ?? 0);
  result.mptcpServer = serverOut;
  result.mptcpIdentity = apIdentity.name;

  step('ap failure');
  // apA vanishes without a word; its identity must move (apC is what is left), the other stays.
  const other = ready.identities.find((i) => i.ssid !== 'apA')!;
  await testbed.stopAp('apA', 'SIGKILL');
  const killedAt = performance.now();
  const recovered = await waitForWifi(manager, 'the identity of apA to move', (s) => s.identities.some((i) => i.name === apIdentity.name && i.status === 'connected' && i.ssid === 'apC'));
  result.recoveryObservedMs = Math.round(performance.now() - killedAt);
  result.recovered = recovered;
  result.otherUntouched = recovered.identities.find((i) => i.name === other.name);
  await manager.stop();
  result.interfacesAfterStop = execFileSync('ip', ['-brief', 'link'], { encoding: 'utf8' });
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  await testbed.stop();
  writeResult('wifi-multichannel', result);
}
