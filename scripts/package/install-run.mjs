// Installs a built .deb into a fresh emulated bookworm root with `dpkg -i`, starts the agent
// there as its own user with the demo profiles, and checks it from the host: GET /readyz, the
// devices and a demo value moving through the API, a twin update over MQTT, and the
// `edge-agent devices` client inside the root. Resolves with the figures the bench reports.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { output, PackageError, run, VERSION } from './common.mjs';
import { freshRoot } from './root.mjs';

const READY_TIMEOUT_MS = 120_000;
const DEMO = '/usr/share/edge-agent/device-profiles/demo';
const CONFIG = '/etc/edge-agent/config.yaml';
/** For chroot on the host (in /usr/sbin) and for the commands inside the root. */
const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

function check(condition, message) {
  if (!condition) throw new PackageError(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The deb's Depends that a minimal root may lack (libatomic1 on armhf); installed from the mirror first, as `apt install ./x.deb` would. */
function dependsOf(deb) {
  const depends = output('dpkg-deb', ['-f', deb, 'Depends']);
  return depends.split(',').map((d) => d.trim().split(/\s/)[0]).filter(Boolean);
}

function inRoot(root, args, options = {}) {
  return spawnSync('chroot', [root, ...args], { encoding: 'utf8', env: { PATH, LC_ALL: 'C', ...options.env } });
}

/** The numeric uid:gid of a user of the root: chroot would otherwise look the name up on the host. */
function userOf(root, name) {
  const line = readFileSync(`${root}/etc/passwd`, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  check(line, `postinst made no ${name} user`);
  const [, , uid, gid] = line.split(':');
  return `${uid}:${gid}`;
}

function asAgent(root, user, args) {
  return ['--userspec', user, root, ...args];
}

/** Spawns the agent and resolves at its "agent ready" line with the URLs it names. */
function startAgent(root, user) {
  const started = performance.now();
  const child = spawn('chroot', asAgent(root, user, ['/usr/bin/edge-agent', 'start', '--config', CONFIG, '--profiles', DEMO, '--mqtt-port', '0', '--api-port', '0']), {
    env: { PATH, HOME: '/var/lib/edge-agent', LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new PackageError(`no "agent ready" within ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS);
    exited.then((code) => reject(new PackageError(`the agent exited (${code}) before it was ready: ${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg !== 'agent ready') return;
      clearTimeout(timer);
      resolve({ readyMs: Math.round(performance.now() - started), api: entry.api, mqtt: entry.mqtt });
    });
  });
  return { child, exited, ready };
}

/** Resident memory of the agent's process: under qemu-user, the emulator's, about 2.5 times the native figure. */
function rssMiB(pid) {
  const kib = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Math.round(Number(kib) / 1024);
}

async function twinCount(api, token) {
  const response = await fetch(`${api}/api/v1/devices/default/counter-01/twin`, { headers: { Authorization: `Bearer ${token}` } });
  check(response.ok, `GET counter-01's twin answered ${response.status}`);
  return Number((await response.json()).count?.actual?.value);
}

async function mqttUpdate(url) {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  try {
    await client.subscribeAsync('$hw/events/device/+/+/twin/update/document');
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new PackageError('no twin update document over MQTT within 15 s')), 15_000);
      client.on('message', (topic) => {
        clearTimeout(timer);
        resolve(topic);
      });
    });
  } finally {
    await client.endAsync();
  }
}

export async function installAndRun(arch, target, deb, say = console.error) {
  const { root, release } = freshRoot(arch, target, dependsOf(deb));
  try {
    for (const tool of ['gcc', 'cc', 'g++', 'make', 'node', 'nodejs']) check(inRoot(root, ['sh', '-c', `command -v ${tool}`]).status !== 0, `the test root has ${tool}: it must show the package needs none`);
    copyFileSync(deb, `${root}/tmp/${basename(deb)}`);
    const installStarted = performance.now();
    const install = inRoot(root, ['dpkg', '-i', `/tmp/${basename(deb)}`]);
    const installMs = Math.round(performance.now() - installStarted);
    check(install.status === 0, `dpkg -i failed: ${install.stdout}${install.stderr}`);
    say(`${arch}: dpkg -i took ${installMs} ms`);

    const version = inRoot(root, ['/usr/bin/edge-agent', '--version']);
    check(version.stdout.startsWith(`edge-agent ${VERSION} `), `edge-agent --version said ${JSON.stringify(version.stdout + version.stderr)}`);
    say(`${arch}: ${version.stdout.trim()}`);

    const user = userOf(root, 'edge-agent');
    // What the unit's RuntimeDirectory= makes under systemd, which a chroot lacks.
    run('chroot', [root, 'install', '-d', '-o', 'edge-agent', '-g', 'edge-agent', '-m', '0700', '/run/edge-agent']);
    const diagnosis = spawnSync('chroot', asAgent(root, user, ['/usr/bin/edge-agent', 'check', '--config', CONFIG]), { encoding: 'utf8', env: { PATH } });
    say(diagnosis.stdout.trim().replace(/^/gm, `${arch}: check: `));
    check(diagnosis.status === 0, `edge-agent check failed (${diagnosis.status}): ${diagnosis.stdout}${diagnosis.stderr}`);

    const agent = startAgent(root, user);
    const { readyMs, api, mqtt: mqttUrl } = await agent.ready;
    say(`${arch}: agent ready after ${readyMs} ms at ${api}, ${mqttUrl}`);
    try {
      const readyz = await fetch(`${api}/readyz`);
      check(readyz.status === 200, `GET /readyz answered ${readyz.status}: ${await readyz.text()}`);
      const token = readFileSync(`${root}/var/lib/edge-agent/api-token`, 'utf8').trim();
      const devices = await (await fetch(`${api}/api/v1/devices`, { headers: { Authorization: `Bearer ${token}` } })).json();
      const ids = devices.devices.map((d) => d.id);
      check(ids.includes('default/counter-01'), `the demo devices are not all there: ${ids.join(', ')}`);
      const topic = await mqttUpdate(mqttUrl);
      say(`${arch}: MQTT ${topic}`);
      const first = await twinCount(api, token);
      await sleep(3000);
      const second = await twinCount(api, token);
      check(second > first, `counter-01's count did not move in 3 s: ${first} then ${second}`);
      say(`${arch}: counter-01 counted ${first} -> ${second}`);
      const cli = spawnSync('chroot', asAgent(root, user, ['/usr/bin/edge-agent', 'devices', '--config', CONFIG, '--api', api]), { encoding: 'utf8', env: { PATH } });
      check(cli.status === 0 && /default\/counter-01\s+online/.test(cli.stdout), `edge-agent devices said (${cli.status}): ${cli.stdout}${cli.stderr}`);
      say(`${arch}: edge-agent devices:\n${cli.stdout.trimEnd()}`);
      const rss = rssMiB(agent.child.pid);
      agent.child.kill('SIGTERM');
      const code = await agent.exited;
      check(code === 0, `the agent exited with ${code} on SIGTERM`);

      const purge = inRoot(root, ['dpkg', '--purge', 'edge-agent']);
      check(purge.status === 0, `dpkg --purge failed: ${purge.stdout}${purge.stderr}`);
      check(inRoot(root, ['test', '-e', '/var/lib/edge-agent']).status !== 0, 'purge left /var/lib/edge-agent');
      say(`${arch}: purged; /var/lib/edge-agent removed`);
      return { installMs, readyMs, rssMiB: rss, devices: ids.length };
    } finally {
      agent.child.kill('SIGKILL');
    }
  } finally {
    release();
  }
}
