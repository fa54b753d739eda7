/**
 * In the VM: a radio that can only be on one channel at a time, driven by the whole agent
 * (`edge-agent start` with a wifi section). Both identities start on channel 1, where the APs
 * are busy; quieter APs appear on channel 6 and the agent moves the whole radio there, once.
 * The state is read the ways an operator reads it: API, CLI and the MQTT telemetry topic.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { spawnAgent } from '../../support/agent-process.js';
import type { WifiState } from '../../../src/wifi/state.js';
import { startScenario, writeResult } from '../scenario.js';
import { WifiTestbed } from '../wifi-testbed.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const { result, step } = startScenario('wifi-channel-switch', 420_000);

const testbed = new WifiTestbed({ apRadios: 4, channels: 1 });
let agent: Awaited<ReturnType<typeof spawnAgent>> | undefined;
try {
  step('busy APs and the agent');
  await testbed.startAp({ ssid: 'busyA', channel: 1, subnet: 1, utilization: 200 });
  await testbed.startAp({ ssid: 'busyB', channel: 1, subnet: 2, utilization: 200 });
  const config = {
    wifi: {
      enabled: true,
      radio: testbed.stationInterface,
      identities: 2,
      networks: [{ ssid: 'busyA' }, { ssid: 'busyB' }, { ssid: 'quietA', passphrase: 'quiet-passphrase' }, { ssid: 'quietB' }],
      evaluateIntervalMs: 1000,
      scanIntervalMs: 3000,
    },
  };
  writeFileSync('/tmp/agent.json', JSON.stringify(config));
  agent = await spawnAgent(['--config', '/tmp/agent.json', '--data', '/tmp/agent-data', '--node', 'edge-vm']);
  const { apiUrl, api, mqttUrl } = agent;
  const state = async () => (await (await api('/api/v1/wifi')).json()) as WifiState;
  const until = async (what: string, test: (s: WifiState) => boolean) => {
    for (;;) {
      const s = await state();
      if (test(s)) return s;
      result.lastSeen = s;
      result.waitingFor = what;
      await sleep(200);
    }
  };
  const telemetry: WifiState[] = [];
  const subscriber = mqtt.connect(mqttUrl);
  subscriber.on('message', (_topic, payload) => telemetry.push(JSON.parse(payload.toString()) as WifiState));
  await subscriber.subscribeAsync('edge-agent/node/edge-vm/wifi');

  step('both identities on channel 1');
  result.before = await until('both identities on channel 1', (s) => s.identities?.every((i) => i.status === 'connected') && s.channels.join() === '1');
  step('quiet APs on channel 6');
  await testbed.startAp({ ssid: 'quietA', channel: 6, subnet: 3, passphrase: 'quiet-passphrase', utilization: 10 });
  await testbed.startAp({ ssid: 'quietB', channel: 6, subnet: 4, utilization: 10 });
  result.after = await until('the radio to move to channel 6', (s) => s.lastSwitch !== undefined && s.identities.every((i) => i.status === 'connected' && i.channel === 6));
  // Several more rounds: the radio must stay where it is.
  await sleep(8000);
  result.settled = await state();
  result.cli = execFileSync(process.execPath, ['dist/src/cli.js', 'wifi', '--api', apiUrl, '--data', '/tmp/agent-data'], { encoding: 'utf8' });
  result.telemetry = { messages: telemetry.length, last: telemetry.at(-1) };
  await subscriber.endAsync();
} catch (error) {
  result.error = (error as Error).stack;
  process.exitCode = 1;
} finally {
  if (agent) {
    agent.child.kill('SIGTERM');
    result.agentExit = await agent.exited;
  }
  result.interfacesAfterStop = execFileSync('ip', ['-brief', 'link'], { encoding: 'utf8' });
  await testbed.stop();
  writeResult('wifi-channel-switch', result);
}
