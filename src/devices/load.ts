/** Reads KubeEdge Device/DeviceModel manifests from YAML files and directories. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import type { GenericSchema } from 'valibot';
import type { Device, DeviceModel, ManifestSource } from './model.js';
import { deviceFromV1alpha2, deviceFromV1beta1, modelFromV1alpha2, modelFromV1beta1 } from './normalize.js';
import { parseWith } from '../schema.js';
import { byCodeUnits } from '../compare.js';
import { deviceModelV1alpha2, deviceModelV1beta1, deviceV1alpha2, deviceV1beta1, manifestHeader } from './schema.js';

export interface ManifestError extends ManifestSource {
  path: string;
  reason: string;
}

export interface ManifestNote extends ManifestSource {
  note: string;
}

export interface Catalog {
  devices: Map<string, Device & { source: ManifestSource }>;
  models: Map<string, DeviceModel & { source: ManifestSource }>;
  errors: ManifestError[];
  notes: ManifestNote[];
  /** Profile files and directories that could not be read (also in `errors`): what they defined is unknown, not gone. */
  unread: string[];
}

const API_GROUP = 'devices.kubeedge.io/';

type Converter = { schema: GenericSchema; build: (doc: never) => Device | DeviceModel; kind: 'device' | 'model' };
const converters: Record<string, Converter> = {
  'devices.kubeedge.io/v1alpha2/Device': { schema: deviceV1alpha2, build: deviceFromV1alpha2, kind: 'device' },
  'devices.kubeedge.io/v1beta1/Device': { schema: deviceV1beta1, build: deviceFromV1beta1, kind: 'device' },
  'devices.kubeedge.io/v1alpha2/DeviceModel': { schema: deviceModelV1alpha2, build: modelFromV1alpha2, kind: 'model' },
  'devices.kubeedge.io/v1beta1/DeviceModel': { schema: deviceModelV1beta1, build: modelFromV1beta1, kind: 'model' },
};

export function formatError(e: ManifestError): string {
  return `${e.file}: document ${e.index}: ${e.path || '(root)'}: ${e.reason}`;
}

function emptyCatalog(): Catalog {
  return { devices: new Map(), models: new Map(), errors: [], notes: [], unread: [] };
}

function cannotRead(catalog: Catalog, path: string, error: unknown): void {
  catalog.unread.push(path);
  catalog.errors.push({ file: path, index: 0, path: '', reason: (error as Error).message });
}

/** The manifest files under `path`; a directory that cannot be listed (missing, unreadable) is noted as unread, the rest listed. */
function manifestFiles(catalog: Catalog, path: string): string[] {
  let entries;
  try {
    if (!statSync(path).isDirectory()) return [path];
    entries = readdirSync(path, { withFileTypes: true });
  } catch (error) {
    cannotRead(catalog, path, error);
    return [];
  }
  return entries
    .sort((a, b) => byCodeUnits(a.name, b.name))
    .flatMap((entry) => {
      const full = join(path, entry.name);
      if (entry.isDirectory()) return manifestFiles(catalog, full);
      return /\.ya?ml$/i.test(entry.name) ? [full] : [];
    });
}

function loadDocument(catalog: Catalog, source: ManifestSource, doc: unknown): void {
  const fail = (path: string, reason: string): void => {
    catalog.errors.push({ ...source, path, reason });
  };
  if (doc === null || doc === undefined) return;
  const header = parseWith(manifestHeader, doc);
  if (!header.ok) return fail('', 'not a Kubernetes object (apiVersion and kind are required)');
  const { apiVersion, kind } = header.value;
  const converter = converters[`${apiVersion}/${kind}`];
  if (!converter) {
    const known = apiVersion.startsWith(API_GROUP) && (kind === 'Device' || kind === 'DeviceModel');
    if (known) return fail('apiVersion', `unsupported version ${apiVersion} (supported: v1alpha2, v1beta1)`);
    catalog.notes.push({ ...source, note: `skipped ${kind} (${apiVersion}): not a KubeEdge Device or DeviceModel` });
    return;
  }
  const parsed = parseWith(converter.schema, doc);
  if (!parsed.ok) {
    for (const issue of parsed.issues) fail(issue.path, issue.message);
    return;
  }
  const item = converter.build(parsed.value as never);
  const target = converter.kind === 'device' ? catalog.devices : catalog.models;
  if (target.has(item.id)) {
    const first = target.get(item.id)!.source;
    return fail('metadata.name', `${kind} ${item.id} is already defined in ${first.file} document ${first.index}`);
  }
  (target as Map<string, unknown>).set(item.id, { ...item, source });
}

/** A device must name a model that exists, and only properties that model defines. */
function checkReferences(catalog: Catalog): void {
  for (const [id, device] of catalog.devices) {
    const fail = (path: string, reason: string) => {
      catalog.errors.push({ ...device.source, path, reason });
      catalog.devices.delete(id);
    };
    const model = catalog.models.get(device.modelId);
    if (!model) {
      fail('spec.deviceModelRef.name', `DeviceModel ${device.modelId} is not defined`);
      continue;
    }
    const known = new Set(model.properties.map((p) => p.name));
    const unknown = device.properties.map((p) => p.name).filter((name) => !known.has(name));
    const field = device.apiVersion.endsWith('v1alpha2') ? 'spec.propertyVisitors' : 'spec.properties';
    if (unknown.length > 0) {
      const subject = unknown.length === 1 ? `property ${unknown[0]} is` : `properties ${unknown.join(', ')} are`;
      fail(field, `${subject} not defined by DeviceModel ${model.id}`);
    }
  }
}

const DOCUMENT_START = /^---(\s|$)/;
const DOCUMENT_END = /^\.\.\.\s*$/;
const CONTENT = /^\s*[^#\s]/m;

/**
 * Splits a YAML stream at its document markers, which the YAML spec only allows at the start
 * of a line, so that one broken document does not hide the others. Comment-only or empty
 * documents are dropped; `line` is where each document starts (1-based).
 */
export function splitDocuments(text: string): Array<{ text: string; line: number }> {
  const documents: Array<{ text: string; line: number }> = [];
  let current: string[] = [];
  let start = 1;
  const close = () => {
    const body = current.join('\n');
    if (CONTENT.test(body)) documents.push({ text: body, line: start });
    current = [];
  };
  text.split(/\r?\n/).forEach((line, i) => {
    if (DOCUMENT_START.test(line)) {
      close();
      start = i + 1;
      current.push(line.slice(3));
    } else if (DOCUMENT_END.test(line)) {
      close();
      start = i + 2;
    } else {
      current.push(line);
    }
  });
  close();
  return documents;
}

export function parseManifests(file: string, text: string, catalog: Catalog = emptyCatalog()): Catalog {
  splitDocuments(text).forEach((document, index) => {
    const source = { file, index };
    let value: unknown;
    try {
      value = yaml.load(document.text, { filename: file });
    } catch (error) {
      const mark = (error as yaml.YAMLException).mark;
      const where = mark ? ` (line ${document.line + mark.line})` : '';
      catalog.errors.push({ ...source, path: '', reason: `YAML: ${(error as yaml.YAMLException).reason ?? (error as Error).message}${where}` });
      return;
    }
    loadDocument(catalog, source, value);
  });
  return catalog;
}

/** One Device or DeviceModel object read on its own (references are not checked): what it is, or why it cannot be served. */
export function parseObject(object: unknown): { errors: string[]; device?: Device; model?: DeviceModel } {
  const catalog = emptyCatalog();
  loadDocument(catalog, { file: 'object', index: 0 }, object);
  const errors = catalog.errors.map((e) => `${e.path || '(root)'}: ${e.reason}`);
  if (catalog.notes.length > 0) errors.push('not a KubeEdge Device or DeviceModel');
  return { errors, device: [...catalog.devices.values()][0], model: [...catalog.models.values()][0] };
}

/** A Device or DeviceModel held outside the profile files, named by where it came from (`cloud`). */
export interface StoredObject {
  source: string;
  id: string;
  object: unknown;
}

/**
 * Loads every manifest under the given files and directories, after the stored objects (which
 * win over a manifest of the same id; each is read as the file `<source>:<id>`); invalid
 * documents are reported, the rest kept. What cannot be read (a missing path, an unreadable
 * file, a dangling link) is reported and noted in `unread`; the rest is loaded all the same.
 */
export function loadCatalog(paths: readonly string[], objects: readonly StoredObject[] = []): Catalog {
  const catalog = emptyCatalog();
  for (const { source, id, object } of objects) loadDocument(catalog, { file: `${source}:${id}`, index: 0 }, object);
  for (const file of paths.flatMap((path) => manifestFiles(catalog, path))) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      cannotRead(catalog, file, error);
      continue;
    }
    parseManifests(file, text, catalog);
  }
  checkReferences(catalog);
  return catalog;
}
