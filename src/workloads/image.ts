/**
 * Workload images: manifests parsed at the edge, artifact digests checked before anything runs,
 * and the content-addressed store the agent keeps verified artifacts in (one file per sha256).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as v from 'valibot';
import { parseOrThrow } from '../schema.js';
import { QEMU_NAME } from './qemu/args.js';
import { guestNetwork, type Architecture, type ArtifactPaths, type ImageArtifact, type ImageManifest } from './types.js';

export class ImageError extends Error {}

const RUNTIMES = ['qemu'] as const;
const ARCHITECTURES = ['x86_64', 'aarch64'] as const;
const SHA256 = /^[0-9a-f]{64}$/;
/** Where `add` writes before the digest is known; leftovers of a killed agent are removed on open. */
const TEMP_PREFIX = '.incoming-';

const unsupported = (what: string, supported: readonly string[]) => (issue: v.BaseIssue<unknown>) =>
  issue.received === 'undefined' ? 'required' : `${what} ${issue.received} is not supported (supported: ${supported.join(', ')})`;

const artifactSchema = v.strictObject({
  role: v.picklist(['kernel', 'initrd', 'disk']),
  // A manifest may come from a peer: its files must not name anything outside its own directory.
  file: v.pipe(v.string(), v.regex(/^(?!\.\.?$)[\w.-]+$/, 'must be a plain file name, next to the manifest')),
  sha256: v.pipe(v.string(), v.toLowerCase(), v.regex(SHA256, 'must be a sha256 digest: 64 hex digits')),
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
});

/** A name that reaches QEMU's command line as an option's value: a comma, '=' or space would add options of the sender's choosing. */
const qemuName = (what: string) => v.pipe(v.string(), v.regex(QEMU_NAME, `must be a QEMU ${what} name: 1-64 of a-z, 0-9, '.', '_', '-' (no ',', '=' or space)`));

/** An image manifest, as a file or a peer's migration offer holds it. */
export const imageManifest = v.pipe(
  v.strictObject({
    name: v.pipe(v.string(), v.regex(/^[\w.-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'")),
    version: v.pipe(v.string(), v.minLength(1)),
    runtime: v.picklist(RUNTIMES, unsupported('runtime', RUNTIMES)),
    kind: v.picklist(['unikernel', 'linux']),
    architecture: v.picklist(ARCHITECTURES, unsupported('architecture', ARCHITECTURES)),
    artifacts: v.pipe(
      v.array(artifactSchema),
      v.check((artifacts) => artifacts.some((a) => a.role === 'kernel'), 'needs a kernel artifact'),
      v.check((artifacts) => new Set(artifacts.map((a) => a.role)).size === artifacts.length, 'has a role more than once'),
    ),
    memoryMiB: v.pipe(v.number(), v.integer(), v.minValue(1)),
    cpus: v.pipe(v.number(), v.integer(), v.minValue(1)),
    // Passed whole as -append (QEMU splits nothing in it); printable ASCII keeps a peer's line readable and one line.
    cmdline: v.optional(v.pipe(v.string(), v.regex(/^[\x20-\x7e]{0,1024}$/, 'must be at most 1024 printable ASCII characters'))),
    ports: v.array(
      v.strictObject({
        name: v.pipe(v.string(), v.minLength(1)),
        guest: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
        protocol: v.literal('tcp'),
      }),
    ),
    aarch64: v.optional(v.strictObject({ machine: qemuName('machine'), cpu: qemuName('CPU model'), accel: v.picklist(['kvm', 'tcg']), notes: v.string() })),
    /** `lan` asks for a network that reaches the host and the LAN; the workload's config must allow it too. */
    network: guestNetwork,
  }),
  v.forward(
    v.check((m) => m.kind !== 'linux' || m.artifacts.some((a) => a.role === 'initrd' || a.role === 'disk'), 'a linux image needs an initrd or a disk artifact'),
    ['artifacts'],
  ),
);

/** The manifest, or a ConfigError naming `where` and every problem (an unsupported runtime or architecture among them). */
export function parseImageManifest(input: unknown, where: string): ImageManifest {
  return parseOrThrow(imageManifest, input, where);
}

const ARCHITECTURE_OF: Partial<Record<NodeJS.Architecture, Architecture>> = { x64: 'x86_64', arm64: 'aarch64' };

export function hostArchitecture(): Architecture {
  const architecture = ARCHITECTURE_OF[process.arch];
  if (!architecture) throw new ImageError(`this host (${process.arch}) runs no workload images (supported: ${ARCHITECTURES.join(', ')})`);
  return architecture;
}

/** Why the image cannot run on this host, or undefined when it can. */
export function checkRunnable(manifest: ImageManifest): string | undefined {
  let host: Architecture;
  try {
    host = hostArchitecture();
  } catch (error) {
    return (error as Error).message;
  }
  return manifest.architecture === host ? undefined : `image is for ${manifest.architecture}, this host is ${host}`;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function verifyArtifact(artifact: ImageArtifact, dir: string): Promise<string> {
  const path = join(dir, artifact.file);
  const what = `artifact ${artifact.role} (${artifact.file})`;
  const stats = await stat(path).catch(() => undefined);
  if (!stats?.isFile()) throw new ImageError(`${what}: ${path} is missing`);
  if (stats.size !== artifact.size) throw new ImageError(`${what}: size is ${stats.size} bytes, the manifest says ${artifact.size}`);
  const actual = await sha256Of(path);
  if (actual !== artifact.sha256) throw new ImageError(`${what}: sha256 is ${actual}, the manifest says ${artifact.sha256}`);
  return path;
}

/** The artifacts next to a manifest, by role, once every one matches its size and digest; else an ImageError naming the first that does not. */
export async function verifyArtifacts(manifest: ImageManifest, dir: string): Promise<ArtifactPaths> {
  const paths: ArtifactPaths = {};
  for (const artifact of manifest.artifacts) paths[artifact.role] = await verifyArtifact(artifact, dir);
  return paths;
}

/** Verified artifacts, each stored once under its sha256 and read-only. A file is only ever renamed into place after its digest matched. */
export class ImageStore {
  constructor(readonly dir: string) {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) if (name.startsWith(TEMP_PREFIX)) rmSync(join(dir, name), { force: true });
  }

  path(sha256: string): string {
    if (!SHA256.test(sha256)) throw new ImageError(`not a sha256 digest: ${JSON.stringify(sha256)}`);
    return join(this.dir, sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.path(sha256));
  }

  /**
   * Stores what `source` (a stream or a file) holds if it is `artifact`: its declared size and sha256.
   * A source that runs past the size is cut off there; on any mismatch an ImageError, and nothing stays behind.
   */
  async add(source: NodeJS.ReadableStream | string, artifact: Pick<ImageArtifact, 'sha256' | 'size'>, onProgress?: (bytes: number) => void): Promise<string> {
    const target = this.path(artifact.sha256);
    await mkdir(this.dir, { recursive: true });
    const temp = join(this.dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let bytes = 0;
    const measure = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        // The moment it is too long, not once it ended: a peer's endless stream must not fill the disk.
        if (bytes > artifact.size) return done(new ImageError(`more than the ${artifact.size} bytes declared: cut off at ${bytes}`));
        hash.update(chunk);
        onProgress?.(bytes);
        done(null, chunk);
      },
    });
    try {
      await pipeline(typeof source === 'string' ? createReadStream(source) : source, measure, createWriteStream(temp, { mode: 0o444 }));
      if (bytes !== artifact.size) throw new ImageError(`${bytes} bytes received, ${artifact.size} declared`);
      const actual = hash.digest('hex');
      if (actual !== artifact.sha256) throw new ImageError(`sha256 is ${actual}, expected ${artifact.sha256} (${bytes} bytes received)`);
      await rename(temp, target);
      return target;
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** Verifies the image a manifest file describes, then stores the artifacts the store lacks: all of them or, on any mismatch, none. */
  async importImage(manifestFile: string): Promise<{ manifest: ImageManifest; artifacts: ArtifactPaths }> {
    let input: unknown;
    try {
      input = JSON.parse(await readFile(manifestFile, 'utf8'));
    } catch (error) {
      throw new ImageError(`${manifestFile}: ${(error as Error).message}`);
    }
    const manifest = parseImageManifest(input, manifestFile);
    const sources = await verifyArtifacts(manifest, dirname(manifestFile));
    const artifacts: ArtifactPaths = {};
    for (const artifact of manifest.artifacts) {
      artifacts[artifact.role] = this.has(artifact.sha256) ? this.path(artifact.sha256) : await this.add(sources[artifact.role]!, artifact);
    }
    return { manifest, artifacts };
  }

  /** Where the manifest's artifacts are in the store, when all of them are. */
  artifactsOf(manifest: ImageManifest): ArtifactPaths | undefined {
    if (!manifest.artifacts.every((artifact) => this.has(artifact.sha256))) return undefined;
    return Object.fromEntries(manifest.artifacts.map((artifact) => [artifact.role, this.path(artifact.sha256)]));
  }
}
