// The .deb and the .tar.gz of one staged tree. dpkg-deb builds the package (root-owned files
// without fakeroot); lintian checks it when installed, and its errors fail the build.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, lstatSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative } from 'node:path';
import { sharedLibraryDepends } from './depends.mjs';
import { COMMON_DEPENDS } from './targets.mjs';
import { LIB } from './tree.mjs';
import { log, output, PackageError, RELEASE, ROOT, run, VERSION } from './common.mjs';

const CONFFILES = ['/etc/edge-agent/config.yaml'];
const SCRIPTS = ['postinst', 'prerm', 'postrm'];

function files(root, path = root) {
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => (e.isDirectory() ? files(root, join(path, e.name)) : [join(path, e.name)]));
}

function control(root, arch, target) {
  const debian = join(root, 'DEBIAN');
  rmSync(debian, { recursive: true, force: true });
  mkdirSync(debian, { mode: 0o755 });
  const installedKiB = Number(output('du', ['-sk', '--apparent-size', '--exclude=DEBIAN', root]).split('\t')[0]);
  const depends = [...sharedLibraryDepends(join(root, LIB), target), ...COMMON_DEPENDS, ...target.depends];
  const fields = { VERSION, ARCH: arch, INSTALLED_SIZE: String(installedKiB), DEPENDS: depends.join(', ') };
  const template = readFileSync(join(ROOT, 'packaging/debian/control.in'), 'utf8');
  writeFileSync(join(debian, 'control'), template.replace(/@([A-Z_]+)@/g, (_, key) => fields[key]));
  writeFileSync(join(debian, 'conffiles'), `${CONFFILES.join('\n')}\n`);
  const sums = files(root)
    .filter((path) => !path.startsWith(debian) && lstatSync(path).isFile())
    .map((path) => `${createHash('md5').update(readFileSync(path)).digest('hex')}  ${relative(root, path)}`);
  writeFileSync(join(debian, 'md5sums'), `${sums.join('\n')}\n`);
  for (const name of ['control', 'conffiles', 'md5sums']) chmodSync(join(debian, name), 0o644);
  for (const name of SCRIPTS) {
    copyFileSync(join(ROOT, 'packaging/debian', name), join(debian, name));
    chmodSync(join(debian, name), 0o755);
  }
}

export const debFile = (arch) => join(RELEASE, `edge-agent_${VERSION}_${arch}.deb`);
export const tarballFile = (arch) => join(RELEASE, `edge-agent-${VERSION}-linux-${arch}.tar.gz`);

export function writeDeb(root, arch, target) {
  control(root, arch, target);
  mkdirSync(RELEASE, { recursive: true });
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, debFile(arch)], { stdio: ['ignore', 'ignore', 'inherit'] });
  return debFile(arch);
}

/** The same tree for firmware without dpkg: unpack at / (or anywhere: the launcher finds its Node.js beside it). */
export function writeTarball(root, arch) {
  mkdirSync(RELEASE, { recursive: true });
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--exclude=./DEBIAN', '-czf', tarballFile(arch), '-C', root, '.']);
  return tarballFile(arch);
}

/** Errors fail the build; warnings are printed. Without lintian installed, says so and passes. */
export function lint(deb) {
  const found = spawnSync('lintian', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    log('lintian is not installed (apt-get install lintian): the package was not checked');
    return { checked: false };
  }
  const result = spawnSync('lintian', ['--no-tag-display-limit', deb], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const lines = `${result.stdout}${result.stderr}`.split('\n').filter(Boolean);
  for (const line of lines) console.error(`lintian: ${line}`);
  const errors = lines.filter((line) => line.startsWith('E:'));
  if (errors.length > 0) throw new PackageError(`lintian found ${errors.length} errors in ${deb}`);
  return { checked: true, warnings: lines.filter((line) => line.startsWith('W:')).length };
}
