/**
 * What CloudCore's controllers answer to upstream messages (research §3, §4.2, §5): edgecontroller
 * registers and patches nodes, devicecontroller confirms twin and state reports, an operation
 * `response` acknowledges a downstream message, and keepalives get nothing.
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
  errors: string[];
  /** The apiserver's last resourceVersion. */
  resourceVersion: number;
}

const NODE = /^([^/]+)\/node\/([^/]+)$/;
const NODE_PATCH = /^([^/]+)\/nodepatch\/([^/]+)$/;
const TWIN_REPORT = /^device\/[^/]+\/[^/]+\/(twin\/edge_updated|state\/update)$/;

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

function registerNode(state: ControllerState, message: BeehiveMessage, namespace: string, name: string): BeehiveMessage {
  const node = contentObject(message);
  if (!isObject(node)) throw new MessageError(`node insert for ${name} does not carry a Node object`);
  const metadata = isObject(node.metadata) ? node.metadata : {};
  const previous = state.nodes.get(name)?.node.metadata as Json | undefined;
  const stored = {
    ...node,
    metadata: {
      ...metadata,
      uid: previous?.uid ?? randomUUID(),
      creationTimestamp: previous?.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
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
  if (TWIN_REPORT.test(resource) && state.answerTwin) {
    const route = { source: 'devicecontroller', group: 'twin', operation: 'response', resource: 'twin' };
    return newMessage(route, 'OK', { parent_msg_id: message.header.msg_id });
  }
  return undefined;
}
