#!/usr/bin/env node
// `npm test`: makes sure the Debian packages the tests talk to are installed (installing them
// when run as root, naming them otherwise), builds, then runs the whole vitest suite.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const list = new URL('./test-packages.txt', import.meta.url);
const missing = readFileSync(list, 'utf8')
  .split('\n')
  .filter((line) => line.trim() && !line.startsWith('#'))
  .map((line) => line.trim().split(/\s+/))
  .filter(([, command]) => !existsSync(command))
  .map(([pkg]) => pkg);

if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(`npm test needs these Debian packages: ${missing.join(' ')}\n  sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing Debian packages for the tests: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
}

const run = (command, args) => {
  const result = spawnSync(command, args, { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
};
run('npm', ['run', '--silent', 'build']);
run('npx', ['tsc', '-p', 'tsconfig.test.json']);
run('node', ['scripts/build-images.mjs']);
run('npx', ['vitest', 'run', ...process.argv.slice(2)]);
