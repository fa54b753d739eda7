/**
 * This gateway as a Kubernetes v1.Node, the way EdgeCore's edged registers it: capacity and
 * allocatable CPU and memory, nodeInfo, addresses and a Ready condition, from the host facts the
 * telemetry module reads. Registered with `insert` on `<ns>/node/<node>`, kept fresh with `patch`
 * on `<ns>/nodepatch/<node>`.
 */
import type { HostFacts } from '../telemetry/index.js';
import type { CloudConfig } from './config.js';
import { newMessage, type BeehiveMessage } from './message.js';

/** KubeEdge's edged reserves nothing by default; pods are not run here, the count only has to parse. */
const MAX_PODS = '110';
const AGENT_VERSION = 'v1.29.0-edge-agent';

export interface NodeFacts {
  architecture: string;
  kernelVersion: string;
  osImage: string;
  machineID: string;
  cpu: string;
  memory: string;
  addresses: Array<{ type: string; address: string }>;
}

const ARCHITECTURES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };

/** The node's facts from the telemetry module's host facts (static ones cached there, addresses read each time). */
export async function nodeFacts(node: string, telemetry: { host(): Promise<HostFacts> }): Promise<NodeFacts> {
  const host = await telemetry.host();
  return {
    architecture: ARCHITECTURES[host.arch] ?? host.arch,
    kernelVersion: host.kernel,
    osImage: `${host.distro} ${host.release}${host.codename ? ` (${host.codename})` : ''}`,
    machineID: host.machineId,
    cpu: String(host.cpus),
    memory: `${Math.floor(host.memoryBytes / 1024)}Ki`,
    addresses: [...host.addresses.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: node }],
  };
}

/** Kubernetes' metav1.Time: RFC 3339 in whole seconds. */
export function kubernetesTime(date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

function status(facts: NodeFacts, since: string): Record<string, unknown> {
  const now = kubernetesTime();
  const resources = { cpu: facts.cpu, memory: facts.memory, pods: MAX_PODS };
  return {
    capacity: resources,
    allocatable: resources,
    addresses: facts.addresses,
    conditions: [{ type: 'Ready', status: 'True', reason: 'EdgeReady', message: 'edge is posting ready status', lastHeartbeatTime: now, lastTransitionTime: since }],
    nodeInfo: {
      machineID: facts.machineID,
      systemUUID: facts.machineID,
      bootID: '',
      kernelVersion: facts.kernelVersion,
      osImage: facts.osImage,
      containerRuntimeVersion: '',
      kubeletVersion: AGENT_VERSION,
      kubeProxyVersion: '',
      operatingSystem: 'linux',
      architecture: facts.architecture,
    },
  };
}

export function nodeResource(config: CloudConfig, node: string, kind: 'node' | 'nodepatch'): string {
  return `${config.nodeNamespace}/${kind}/${node}`;
}

export function registerNode(config: CloudConfig, node: string, facts: NodeFacts, since: string): BeehiveMessage {
  const object = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: node,
      labels: { 'kubernetes.io/arch': facts.architecture, 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/edge': '', 'node-role.kubernetes.io/agent': '' },
    },
    spec: {},
    status: status(facts, since),
  };
  return newMessage({ source: 'edged', group: 'meta', operation: 'insert', resource: nodeResource(config, node, 'node') }, object);
}

/** A strategic-merge patch of the status, as a JSON string (edged's metaclient sends it so). */
export function patchNodeStatus(config: CloudConfig, node: string, facts: NodeFacts, since: string): BeehiveMessage {
  return newMessage({ source: 'edged', group: 'meta', operation: 'patch', resource: nodeResource(config, node, 'nodepatch') }, JSON.stringify({ status: status(facts, since) }));
}

/**
 * The cloud's answer to the registration (an ObjectResp): registered when it has no `Err`, and
 * also when the node already exists, as the kubelet treats AlreadyExists on a node create: the
 * node registered before (an earlier connection, or another start) is this one.
 */
export function registration(content: unknown): { registered: boolean; existed: boolean; error?: unknown } {
  const answer = content as { Err?: unknown } | undefined;
  const error = answer && typeof answer === 'object' ? answer.Err : undefined;
  if (!error || (typeof error === 'object' && Object.keys(error).length === 0)) return { registered: true, existed: false };
  // Only the reason: code 409 is also a Conflict, which is no registration.
  if ((error as { ErrStatus?: { reason?: unknown } }).ErrStatus?.reason === 'AlreadyExists') return { registered: true, existed: true };
  return { registered: false, existed: false, error };
}
