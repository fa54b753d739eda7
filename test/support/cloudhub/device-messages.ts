/**
 * Downstream device messages exactly as devicecontroller sends them (research §4.1), after
 * CloudHub trimmed the `node/<node>/` prefix off the resource.
 */
import { randomUUID } from 'node:crypto';
import { newMessage, type BeehiveMessage } from '../../../src/cloud/message.js';

export interface KubeObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface MembershipDevice {
  /** `<namespace>/<name>`. */
  id: string;
  name: string;
  description?: string;
}

type Operation = 'insert' | 'update' | 'delete';

let lastResourceVersion = 2000;

/** Group `resource`, resource `<ns>/<kind>/<name>`, the object with its apiVersion/kind and resourceversion in header and metadata. */
function objectMessage(kind: 'Device' | 'DeviceModel', op: Operation, object: KubeObject): BeehiveMessage {
  const namespace = object.metadata.namespace ?? 'default';
  const resourceVersion = object.metadata.resourceVersion ?? String(++lastResourceVersion);
  const content = { ...object, apiVersion: 'devices.kubeedge.io/v1beta1', kind, metadata: { ...object.metadata, namespace, resourceVersion } };
  const route = { source: 'devicecontroller', group: 'resource', operation: op, resource: `${namespace}/${kind.toLowerCase()}/${object.metadata.name}` };
  return newMessage(route, content, { resourceversion: resourceVersion });
}

export function deviceMessage(op: Operation, device: KubeObject): BeehiveMessage {
  return objectMessage('Device', op, device);
}

export function deviceModelMessage(op: Operation, model: KubeObject): BeehiveMessage {
  return objectMessage('DeviceModel', op, model);
}

/** `types.MembershipUpdate`: a Go nil slice, i.e. an empty list here, is `null` on the wire. */
export function membershipMessage(added: MembershipDevice[], removed: MembershipDevice[] = []): BeehiveMessage {
  const devices = (list: MembershipDevice[]) => (list.length === 0 ? null : list.map(({ id, name, description }) => ({ id, name, ...(description ? { description } : {}) })));
  const content = { event_id: randomUUID(), timestamp: Date.now(), added_devices: devices(added), removed_devices: devices(removed) };
  return newMessage({ source: 'devicecontroller', group: 'twin', operation: 'update', resource: 'membership' }, content);
}
