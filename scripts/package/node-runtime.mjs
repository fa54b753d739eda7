// The official Node.js binaries for an architecture, from the npm registry (`node-linux-<arch>`
// packages hold bin/node and include/node), fetched once into the cache and unpacked there.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { CACHE, log, run } from './common.mjs';

/** The unpacked package: `<dir>/bin/node`, `<dir>/include/node` (headers for --nodedir), `<dir>/LICENSE`. */
export function nodeRuntime(target) {
  const { name, version } = target.node;
  const dir = `${CACHE}/node/${name}-${version}`;
  if (existsSync(`${dir}/bin/node`)) return dir;
  const tarball = `${CACHE}/node/${name}-${version}.tgz`;
  mkdirSync(`${CACHE}/node`, { recursive: true });
  if (!existsSync(tarball)) {
    log(`fetching ${name}@${version} from the npm registry`);
    run('npm', ['pack', `${name}@${version}`, '--silent', '--pack-destination', `${CACHE}/node`], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const unpacking = `${dir}.unpacking`;
  rmSync(unpacking, { recursive: true, force: true });
  mkdirSync(unpacking, { recursive: true });
  run('tar', ['-xzf', tarball, '-C', unpacking, '--strip-components=1']);
  renameSync(unpacking, dir);
  return dir;
}
