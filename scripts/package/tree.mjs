// The installed file tree of one architecture's package, laid out under a staging root exactly
// as dpkg installs it; the tarball carries the same tree.
//
//   /usr/lib/edge-agent/{bin/edge-agent, dist/, node_modules/, node/, package.json}
//   /usr/bin/edge-agent -> ../lib/edge-agent/bin/edge-agent
//   /lib/systemd/system/edge-agent.service
//   /etc/edge-agent/config.yaml (conffile), /etc/edge-agent/device-profiles/
//   /usr/share/edge-agent/{device-profiles, images}/
//   /usr/share/doc/edge-agent/{copyright, changelog.gz, README.md}
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CACHE, log, PackageError, ROOT, run, VERSION } from './common.mjs';
import { stripCommand } from './modules.mjs';

export const LIB = 'usr/lib/edge-agent';

/** Compiles the agent into the cache (not dist/: a checkout's build is left alone), with the non-TypeScript files it reads at run time (.proto, …). */
export function buildJavaScript() {
  const out = `${CACHE}/build`;
  rmSync(out, { recursive: true, force: true });
  log('compiling TypeScript');
  run('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', out], { cwd: ROOT });
  for (const folder of ['src', 'mappers']) {
    cpSync(join(ROOT, folder), join(out, folder), { recursive: true, filter: (path) => statSync(path).isDirectory() || !path.endsWith('.ts') });
  }
  return out;
}

function copyTree(from, to, mode = 0o644) {
  cpSync(from, to, { recursive: true, dereference: true });
  const fix = (path) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) {
        chmodSync(full, 0o755);
        fix(full);
      } else chmodSync(full, mode);
    }
  };
  chmodSync(to, 0o755);
  fix(to);
}

function file(root, path, content, mode = 0o644) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
  chmodSync(join(root, path), mode);
}

/** What `npm` and the CLI read of package.json: the version (`--version`) and the module type (ESM). */
function installedPackageJson() {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  return `${JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, type: pkg.type, license: pkg.license, engines: pkg.engines }, null, 2)}\n`;
}

export function layTree({ root, build, modules, nodeDir, target }) {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const lib = join(root, LIB);
  copyTree(join(build, 'src'), join(lib, 'dist/src'));
  copyTree(join(build, 'mappers'), join(lib, 'dist/mappers'));
  copyTree(join(modules, 'node_modules'), join(lib, 'node_modules'));
  file(root, `${LIB}/package.json`, installedPackageJson());
  file(root, `${LIB}/bin/edge-agent`, readFileSync(join(ROOT, 'bin/edge-agent')), 0o755);
  mkdirSync(join(lib, 'node/bin'), { recursive: true });
  copyFileSync(join(nodeDir, 'bin/node'), join(lib, 'node/bin/node'));
  chmodSync(join(lib, 'node/bin/node'), 0o755);
  // The official binary keeps its symbol table; stack traces of JavaScript do not need it.
  run(stripCommand(target), ['--strip-unneeded', join(lib, 'node/bin/node')]);
  copyFileSync(join(nodeDir, 'LICENSE'), join(lib, 'node/LICENSE'));
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  symlinkSync('../lib/edge-agent/bin/edge-agent', join(root, 'usr/bin/edge-agent'));

  file(root, 'lib/systemd/system/edge-agent.service', readFileSync(join(ROOT, 'packaging/edge-agent.service')));
  file(root, 'etc/edge-agent/config.yaml', readFileSync(join(ROOT, 'packaging/config.yaml')));
  mkdirSync(join(root, 'etc/edge-agent/device-profiles'), { recursive: true });

  copyTree(join(ROOT, 'device-profiles'), join(root, 'usr/share/edge-agent/device-profiles'));
  const images = join(ROOT, 'images/build');
  if (!existsSync(images)) throw new PackageError('images/build is missing: node scripts/build-images.mjs builds the workload images first');
  copyTree(images, join(root, 'usr/share/edge-agent/images'));

  const doc = 'usr/share/doc/edge-agent';
  file(root, `${doc}/copyright`, readFileSync(join(ROOT, 'packaging/debian/copyright')));
  file(root, `${doc}/README.md`, readFileSync(join(ROOT, 'README.md')));
  const changelog = readFileSync(join(ROOT, 'packaging/debian/changelog'), 'utf8');
  const top = /^edge-agent \(([^)]+)\)/.exec(changelog)?.[1];
  if (top !== VERSION) throw new PackageError(`packaging/debian/changelog starts at ${top}, package.json says ${VERSION}: add an entry`);
  mkdirSync(join(root, doc), { recursive: true });
  // -n: no name or time stamp in the gzip header, so the same changelog gives the same bytes.
  run('sh', ['-c', 'gzip -9n < "$1" > "$2"', 'sh', join(ROOT, 'packaging/debian/changelog'), join(root, doc, 'changelog.gz')]);
  chmodSync(join(root, doc, 'changelog.gz'), 0o644);
  file(root, 'usr/share/lintian/overrides/edge-agent', readFileSync(join(ROOT, 'packaging/debian/lintian-overrides')));
  for (const dir of [root, ...walkDirs(root)]) chmodSync(dir, 0o755);
  return root;
}

function walkDirs(path) {
  return readdirSync(path, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => [join(path, e.name), ...walkDirs(join(path, e.name))]);
}

