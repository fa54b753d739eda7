/**
 * What CloudCore's controllers answer to upstream messages (research §3, §4.2, §5): edgecontroller
 * registers and patches nodes (AlreadyExists for a node registered before), devicecontroller
 * confirms twin and state reports of devices it knows once it patched their status and answers
 * nothing otherwise (upstream.go `continue`s on every error), an operation `response`
 * acknowledges a downstream message, and keepalives get nothing.
 */
import { randomUUID } from 'node:crypto';
import { contentObject, MessageError, newMessage, type BeehiveMessage } from '../../../src/cloud/message.js';

type Json = Record<string, unknown>;

export interface RegisteredNode {
  /** The namespace of the `<ns>/node/<name>` resource the edge registered with. */
  namespace: string;
  node: Json;
}

export interface ControllerState {
  nodes: Map<string, RegisteredNode>;
  acked: Set<string>;
  answerTwin: boolean;
  /** Devices devicecontroller has in its cache, `<ns>/<name>`: those sent down and not deleted. */
  devices: Set<string>;
  /** Whether patching a DeviceStatus fails (the apiserver refuses it): the report is then not answered. */
  failPatches: boolean;
  errors: string[];
  /** The apiserver's last resourceVersion. */
  resourceVersion: number;
}

const NODE = /^([^/]+)\/node\/([^/]+)$/;
const NODE_PATCH = /^([^/]+)\/nodepatch\/([^/]+)$/;
const TWIN_REPORT = /^device\/([^/]+\/[^/]+)\/(twin\/edge_updated|state\/update)$/;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** edgecontroller's answer: source edgecontroller, group resource, the request's resource, `ObjectResp` content. */
function objectResponse(request: BeehiveMessage, object: unknown, err: unknown, resourceversion?: string): BeehiveMessage {
  const route = { source: 'edgecontroller', group: 'resource', operation: 'response', resource: request.route.resource };
  return newMessage(route, { Object: object, Err: err }, { parent_msg_id: request.header.msg_id, ...(resourceversion ? { resourceversion } : {}) });
}

function notFound(name: string): Json {
  return { ErrStatus: { status: 'Failure', message: `nodes "${name}" not found`, reason: 'NotFound', code: 404 } };
}

/** The nodepatch content: a JSON string, base64 of one (older edges sent []byte), or an object. */
function patchOf(message: BeehiveMessage): unknown {
  if (typeof message.content !== 'string' || message.content.trimStart().startsWith('{')) return contentObject(message);
  try {
    return JSON.parse(Buffer.from(message.content, 'base64url').toString('utf8'));
  } catch {
    throw new MessageError(`nodepatch content is neither JSON nor base64 of JSON: ${message.content.slice(0, 80)}`);
  }
}

/**
 * Enough of a strategic merge patch for node status: maps merge, `$` directives are dropped, and
 * lists of objects keyed by `type` (conditions, addresses) merge by that key; other lists are replaced.
 */
function strategicMerge(target: unknown, patch: unknown): unknown {
  if (Array.isArray(patch) && Array.isArray(target) && [...patch, ...target].every((item) => isObject(item) && typeof item.type === 'string')) {
    const merged = new Map((target as Json[]).map((item) => [item.type, item]));
    for (const item of patch as Json[]) merged.set(item.type, strategicMerge(merged.get(item.type), item) as Json);
    return [...merged.values()];
  }
  if (!isObject(patch)) return patch;
  const result: Json = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue;
    if (value === null) delete result[key];
    else result[key] = strategicMerge(result[key], value);
  }
  return result;
}

/** The apiserver's answer to creating a node that exists, as client-go's StatusError marshals into ObjectResp.Err. */
function alreadyExists(name: string): Json {
  return { ErrStatus: { metadata: {}, status: 'Failure', message: `nodes "${name}" already exists`, reason: 'AlreadyExists', details: { name, kind: 'nodes' }, code: 409 } };
}

function registerNode(state: ControllerState, message: BeehiveMessage, namespace: string, name: string): BeehiveMessage {
  const node = contentObject(message);
  if (!isObject(node)) throw new MessageError(`node insert for ${name} does not carry a Node object`);
  // edgecontroller's createNode is a plain Create: a node registered before is AlreadyExists, with no object.
  if (state.nodes.has(name)) return objectResponse(message, null, alreadyExists(name));
  const metadata = isObject(node.metadata) ? node.metadata : {};
  const stored = {
    ...node,
    metadata: {
      ...metadata,
      uid: randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      resourceVersion: String(++state.resourceVersion),
    },
  };
  state.nodes.set(name, { namespace, node: stored });
  return objectResponse(message, stored, null);
}

function patchNode(state: ControllerState, message: BeehiveMessage, name: string): BeehiveMessage {
  const registered = state.nodes.get(name);
  if (!registered) {
    state.errors.push(`nodepatch for unregistered node ${name}`);
    return objectResponse(message, null, notFound(name));
  }
  const patched = strategicMerge(registered.node, patchOf(message)) as Json;
  const resourceVersion = String(++state.resourceVersion);
  registered.node = { ...patched, metadata: { ...(patched.metadata as Json), resourceVersion } };
  return objectResponse(message, registered.node, null, resourceVersion);
}

/** The cloud's answer to an upstream message, if it sends one; MessageError for content it cannot use. */
export function answerUpstream(state: ControllerState, message: BeehiveMessage): BeehiveMessage | undefined {
  const { operation, resource } = message.route;
  if (operation === 'response') {
    if (message.header.parent_msg_id) state.acked.add(message.header.parent_msg_id);
    return undefined;
  }
  const node = NODE.exec(resource);
  if (node && operation === 'insert') return registerNode(state, message, node[1]!, node[2]!);
  const nodePatch = NODE_PATCH.exec(resource);
  if (nodePatch && operation === 'patch') return patchNode(state, message, nodePatch[2]!);
  const report = TWIN_REPORT.exec(resource);
  if (report && state.answerTwin && state.devices.has(report[1]!) && !state.failPatches) {
    const route = { source: 'devicecontroller', group: 'twin', operation: 'response', resource: 'twin' };
    return newMessage(route, 'OK', { parent_msg_id: message.header.msg_id });
  }
  return undefined;
}
