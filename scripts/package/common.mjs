// What the packaging scripts share: where things are, and running a command loudly.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Downloads, builds and emulated roots, kept between runs (gitignored). */
export const CACHE = `${ROOT}.package-cache`;
export const RELEASE = `${ROOT}release`;
export const VERSION = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).version;

export class PackageError extends Error {}

/** Runs `command`, its output passed through; throws naming it when it fails. */
export function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options });
  if (result.error) throw new PackageError(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new PackageError(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`);
  return result;
}

/** Runs `command` and returns its standard output. */
export function output(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.error) throw new PackageError(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new PackageError(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}: ${result.stderr}`);
  return result.stdout;
}

export const log = (message) => console.error(`package: ${message}`);
