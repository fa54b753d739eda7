/**
 * Secrets at rest and in output (issue 14, item 5): the modes of the agent's files (data dir,
 * databases with their -wal/-shm, cloud key, API token, run dir), the run dir it chooses and the
 * ones it refuses, and passwords in log lines. Real peers: the agent in-process (the test
 * runner's umask 022 kept, as a library user's would be) joined to a CloudHub-compatible server
 * (test/support/cloudhub); the CLI run from source as the unprivileged user `nobody` (setpriv);
 * the logger writing to a real stdout in a child process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../src/agent.js';
import { resolveConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { defaultRunDir } from '../src/paths.js';
import { makeRunDirPrivate } from '../src/private-dirs.js';
import { redactUrl } from '../src/redact.js';
import { startCloudHub, type CloudHub } from './support/cloudhub/server.js';
import { waitFor } from './support/wait.js';

const ROOT = new URL('../', import.meta.url).pathname;
const PROFILES = join(ROOT, 'test/fixtures/profiles');
const VITE_NODE = join(ROOT, 'node_modules/.bin/vite-node');
const NOBODY = 65534;

const modeOf = (path: string) => statSync(path).mode & 0o777;
const temp = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

describe('the agent’s files', () => {
  let hub: CloudHub;
  let root: string;
  let data: string;
  let run: string;

  const start = (dataDir = data) =>
    startAgent(
      resolveConfig({
        flags: {
          node: 'secrets-test',
          dataDir,
          runDir: run,
          profiles: [PROFILES],
          mqtt: { port: 0 },
          api: { port: 0 },
          log: { level: 'silent' },
          cloud: { enabled: true, server: '127.0.0.1', httpsPort: hub.httpsPort, websocketPort: hub.wsPort, token: hub.token },
        },
      }),
      createLogger('silent'),
    );

  beforeAll(async () => {
    root = temp('secrets-files-');
    data = join(root, 'data');
    run = join(root, 'run');
    hub = await startCloudHub();
  });

  afterAll(async () => {
    await hub?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('are the agent user’s alone: data dir and run dir 0700, databases, cloud key and API token 0600', async () => {
    const agent = await start();
    try {
      await waitFor('the cloud key', () => existsSync(join(data, 'cloud', 'edge.key')), { timeoutMs: 15_000 });
      expect({ data: modeOf(data), run: modeOf(run), cloud: modeOf(join(data, 'cloud')) }).toEqual({ data: 0o700, run: 0o700, cloud: 0o700 });
      const files = ['twin.db', 'twin.db-wal', 'twin.db-shm', 'cloud/ca.crt', 'cloud/edge.crt', 'cloud/edge.key'];
      // The API token is another part's file (item 2); where it exists it is held to the same rule.
      if (existsSync(join(data, 'api-token'))) files.push('api-token');
      expect(Object.fromEntries(files.map((file) => [file, modeOf(join(data, file)).toString(8)]))).toEqual(Object.fromEntries(files.map((file) => [file, '600'])));
    } finally {
      await agent.stop();
    }
  });

  it('narrows what an earlier version left open: a 0755 data dir, and a 0644 database with the -wal/-shm of a crash', async () => {
    const legacy = join(root, 'legacy');
    mkdirSync(legacy, { mode: 0o755 });
    chmodSync(legacy, 0o755);
    // A writer killed mid-run under umask 022, as an earlier version was: its -wal and -shm stay, with content.
    const crashed = spawnSync(
      process.execPath,
      ['-e', `process.umask(0o022); const db = require('better-sqlite3')(${JSON.stringify(join(legacy, 'twin.db'))}); db.pragma('journal_mode = WAL'); db.exec('CREATE TABLE earlier (x)'); process.kill(process.pid, 'SIGKILL');`],
      { cwd: ROOT },
    );
    expect(crashed.signal).toBe('SIGKILL');
    const files = ['twin.db', 'twin.db-wal', 'twin.db-shm'];
    const modes = () => [legacy, ...files.map((file) => join(legacy, file))].map((path) => modeOf(path).toString(8));
    expect(modes()).toEqual(['755', '644', '644', '644']);
    const agent = await start(legacy);
    try {
      expect(modes()).toEqual(['700', '600', '600', '600']);
    } finally {
      await agent.stop();
    }
  });
});

describe('the run dir', () => {
  it('is root’s /run/edge-agent, else inside $XDG_RUNTIME_DIR (when absolute), else /tmp/edge-agent-<uid>', () => {
    expect(defaultRunDir(0, { XDG_RUNTIME_DIR: '/run/user/0' })).toBe('/run/edge-agent');
    expect(defaultRunDir(1000, { XDG_RUNTIME_DIR: '/run/user/1000' })).toBe('/run/user/1000/edge-agent');
    expect(defaultRunDir(1000, { XDG_RUNTIME_DIR: 'relative/dir' })).toBe('/tmp/edge-agent-1000');
    expect(defaultRunDir(1000, {})).toBe('/tmp/edge-agent-1000');
  });

  describe('taken only when private', () => {
    let root: string;
    beforeAll(() => (root = temp('secrets-run-')));
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const refusal = (dir: string) => {
      try {
        makeRunDirPrivate(dir);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
      return 'taken';
    };

    it('creates a missing one (and its parents) 0700, and takes it again', () => {
      const dir = join(root, 'new', 'run');
      expect(refusal(dir)).toBe('taken');
      expect(modeOf(dir)).toBe(0o700);
      expect(refusal(dir)).toBe('taken');
    });

    it('refuses one another user made first, one open to group or others, and a symlink', () => {
      const theirs = join(root, 'theirs');
      mkdirSync(theirs, { mode: 0o700 });
      chownSync(theirs, NOBODY, NOBODY);
      expect(refusal(theirs)).toBe(`runDir ${theirs} belongs to uid ${NOBODY}, not to this user (uid ${process.getuid!()}): remove it, or set runDir to a directory of your own with mode 0700`);
      for (const mode of [0o755, 0o750, 0o777]) {
        const open = join(root, `open-${mode.toString(8)}`);
        mkdirSync(open);
        chmodSync(open, mode);
        expect(refusal(open)).toMatch(new RegExp(`^runDir ${open} is open to group or others \\(mode 0${mode.toString(8)}\\): chmod 700 `));
      }
      const link = join(root, 'link');
      symlinkSync(mkdtempSync(join(root, 'target-')), link);
      expect(refusal(link)).toMatch(/is not a directory \(a symlink\?\)/);
    });
  });

  // The real case: the agent as an unprivileged user on a host where /tmp is shared.
  const setpriv = spawnSync('sh', ['-c', 'command -v setpriv']).status === 0;
  describe.skipIf(process.getuid?.() !== 0 || !setpriv)('as the user nobody (setpriv), the CLI run from source', () => {
    const predictable = `/tmp/edge-agent-${NOBODY}`;
    let home: string;
    beforeAll(() => {
      home = temp('secrets-nobody-');
      chownSync(home, NOBODY, NOBODY);
    });
    afterAll(() => {
      rmSync(home, { recursive: true, force: true });
      rmSync(predictable, { recursive: true, force: true });
    });

    /** `edge-agent start` as nobody: its exit code and stderr, or 'ready' and its umask once it logs "agent ready" (then it is stopped). */
    function runAsNobody(env: Record<string, string>): Promise<{ outcome: number | 'ready'; umask?: string; stderr: string }> {
      const cli = ['start', '--node', 'nobody-test', '--data', join(home, 'data'), '--profiles', PROFILES, '--mqtt-port', '0', '--api-port', '0'];
      const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', `PATH=${process.env.PATH}`, `HOME=${home}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), VITE_NODE, 'src/cli.ts', '--', ...cli], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      let umask: string | undefined;
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (!line.includes('"agent ready"')) return;
        // setpriv and env exec into node, which runs the CLI: the child's pid is the agent's.
        umask = /^Umask:\s*(\d+)$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
        child.kill('SIGTERM');
      });
      return new Promise((resolve) => child.once('close', (code) => resolve({ outcome: umask ? 'ready' : (code ?? -1), umask, stderr })));
    }

    it('refuses /tmp/edge-agent-<uid> when another user made it first', async () => {
      rmSync(predictable, { recursive: true, force: true });
      mkdirSync(predictable, { mode: 0o777 });
      chmodSync(predictable, 0o777);
      const { outcome, stderr } = await runAsNobody({});
      expect(outcome).toBe(2);
      expect(stderr).toContain(`edge-agent: runDir ${predictable} belongs to uid 0, not to this user (uid ${NOBODY})`);
    });

    it('makes /tmp/edge-agent-<uid> itself, 0700, and runs with umask 077', async () => {
      rmSync(predictable, { recursive: true, force: true });
      const { outcome, umask, stderr } = await runAsNobody({});
      expect(outcome, stderr).toBe('ready');
      expect(umask).toBe('0077');
      const run = lstatSync(predictable);
      expect({ uid: run.uid, mode: run.mode & 0o777 }).toEqual({ uid: NOBODY, mode: 0o700 });
      expect(modeOf(join(home, 'data'))).toBe(0o700);
      expect(modeOf(join(home, 'data', 'twin.db'))).toBe(0o600);
    });

    it('uses $XDG_RUNTIME_DIR/edge-agent when the session has a runtime dir', async () => {
      const runtime = join(home, 'runtime');
      mkdirSync(runtime, { mode: 0o700 });
      chownSync(runtime, NOBODY, NOBODY);
      const { outcome, stderr } = await runAsNobody({ XDG_RUNTIME_DIR: runtime });
      expect(outcome, stderr).toBe('ready');
      const run = lstatSync(join(runtime, 'edge-agent'));
      expect({ uid: run.uid, mode: run.mode & 0o777 }).toEqual({ uid: NOBODY, mode: 0o700 });
    });
  });
});

describe('passwords in log lines', () => {
  it('redactUrl hides a URL’s password, also one holding an @, and leaves other text as it is', () => {
    expect(redactUrl('mqtt://edge:s3cret@broker:1883')).toBe('mqtt://edge:***@broker:1883');
    expect(redactUrl('cannot reach mqtts://edge:p@ss:w@broker/x and https://a:b@c')).toBe('cannot reach mqtts://edge:***@broker/x and https://a:***@c');
    expect(redactUrl('http://host:8080/path@x mqtt://broker:1883')).toBe('http://host:8080/path@x mqtt://broker:1883');
  });

  it('show [Redacted] for secret fields and *** for URL passwords, in fields, messages and error stacks', async () => {
    const dir = temp('secrets-log-');
    const probe = join(dir, 'probe.ts');
    writeFileSync(
      probe,
      `import { createLogger, flushLogs } from ${JSON.stringify(join(ROOT, 'src/log.ts'))};
const log = createLogger('info');
log.info({ password: 'SECRET1', wifi: { networks: [{ ssid: 'home', passphrase: 'SECRET2' }] }, user: { passwordHash: 'SECRET3' }, cloud: { token: 'SECRET4' }, tls: { key: 'SECRET5' } }, 'fields');
log.warn({ url: 'mqtt://edge:SECRET6@broker:1883' }, 'reconnecting to mqtt://edge:SECRET7@broker:1883');
log.error({ err: new Error('cannot reach mqtt://edge:SECRET8@broker:1883') }, 'failed');
await flushLogs(log);
`,
    );
    const result = spawnSync(VITE_NODE, [probe], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    rmSync(dir, { recursive: true, force: true });
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(3);
    expect(result.stdout).not.toMatch(/SECRET/);
    expect(lines[0]).toMatchObject({
      password: '[Redacted]',
      wifi: { networks: [{ ssid: 'home', passphrase: '[Redacted]' }] },
      user: { passwordHash: '[Redacted]' },
      cloud: { token: '[Redacted]' },
      tls: { key: '[Redacted]' },
    });
    expect(lines[1]).toMatchObject({ url: 'mqtt://edge:***@broker:1883', msg: 'reconnecting to mqtt://edge:***@broker:1883' });
    expect(lines[2]).toMatchObject({ err: { message: 'cannot reach mqtt://edge:***@broker:1883' } });
  });
});
