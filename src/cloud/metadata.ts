/**
 * The resource messages EdgeCore's metamanager takes from the cloud (process.go): insert, update
 * and patch store the content under the resource as key, delete removes it, and each is answered
 * "OK" once stored. A pod is stored like the rest but not run: its status says so, sent as edged
 * sends pod status (`<ns>/podstatus/<name>`, a PodStatusRequest).
 */
import type { BeehiveMessage } from './message.js';
import { newMessage } from './message.js';
import { kubernetesTime } from './node.js';
import type { StoredResource } from './resources.js';

const STORING = new Set(['insert', 'update', 'patch']);

/** metamanager's parseResource: `<ns>/<type>` or `<ns>/<type>/<name>`; any other shape has no type. */
export function resourceOf(message: BeehiveMessage): StoredResource & { name?: string; namespace: string } {
  const tokens = message.route.resource.split('/');
  const type = tokens.length === 2 ? tokens[1]! : tokens.length === 3 ? tokens[1]! : '';
  const name = tokens.length === 3 ? tokens[2] : undefined;
  return { key: message.route.resource, type, namespace: tokens[0]!, name, resourceVersion: message.header.resourceversion };
}

/** What metamanager does with the operation: store the content, delete the key, or nothing (not a metamanager operation). */
export function metaOperation(message: BeehiveMessage): 'store' | 'delete' | undefined {
  const { operation } = message.route;
  if (STORING.has(operation)) return 'store';
  if (operation === 'delete') return 'delete';
  return undefined;
}

/** The content as metamanager stores it (GetContentData): a string as it is, anything else as JSON. */
export function storedValue(message: BeehiveMessage): string {
  return typeof message.content === 'string' ? message.content : JSON.stringify(message.content ?? null);
}

/**
 * A pod's status as this node reports it: Pending, not Ready, with the reason. Pending rather than
 * Failed, so that a controller does not replace the pod on this node again and again.
 */
export function podNotRun(message: BeehiveMessage, resource: { namespace: string; name?: string }): BeehiveMessage | undefined {
  if (resource.name === undefined) return undefined;
  const content = message.content as { metadata?: { uid?: unknown } } | undefined;
  const uid = typeof content?.metadata?.uid === 'string' ? content.metadata.uid : '';
  const reason = 'NotSupported';
  const text = 'edge-agent stores pods but does not run them: it serves devices, not containers';
  const status = {
    phase: 'Pending',
    reason,
    message: text,
    conditions: [{ type: 'Ready', status: 'False', reason, message: text, lastTransitionTime: kubernetesTime() }],
  };
  const route = { source: 'edged', group: 'meta', operation: 'update', resource: `${resource.namespace}/podstatus/${resource.name}` };
  return newMessage(route, { UID: uid, Name: resource.name, Status: status });
}
