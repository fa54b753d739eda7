/**
 * The KubeEdge (≥ 1.16.2) event bus topics, as EdgeCore's eventbus names them:
 * `$hw/events/device/{ns}/{name}/…` and `$hw/events/node/{node}/…`. The protocol (kubeedge.ts)
 * speaks them; the broker's access rules (rights.ts, policy.ts) tell requests from answers.
 */

export const DEVICE_PREFIX = '$hw/events/device/';
export const NODE_PREFIX = '$hw/events/node/';

/** What mappers send about a device, after `{ns}/{name}/`. */
const REQUEST = { twinUpdate: 'twin/update', twinGet: 'twin/get', stateUpdate: 'state/update' } as const;
/** What the agent answers about a device, after `{ns}/{name}/`. */
const ANSWER = {
  twinUpdateResult: 'twin/update/result',
  twinDelta: 'twin/update/delta',
  twinDocument: 'twin/update/document',
  twinGetResult: 'twin/get/result',
  stateUpdateResult: 'state/update/result',
} as const;
/** What the agent answers about its node, after `{node}/`. */
const NODE_ANSWER = { membershipGetResult: 'membership/get/result', membershipUpdated: 'membership/updated' } as const;

const onDevice = (action: string) => (id: string) => `${DEVICE_PREFIX}${id}/${action}`;
const onNode = (action: string) => (node: string) => `${NODE_PREFIX}${node}/${action}`;

/** Topics by device id (`{ns}/{name}`, or a filter such as `{ns}/+`) or node name. */
export const topics = {
  twinUpdate: onDevice(REQUEST.twinUpdate),
  twinUpdateResult: onDevice(ANSWER.twinUpdateResult),
  twinDelta: onDevice(ANSWER.twinDelta),
  twinDocument: onDevice(ANSWER.twinDocument),
  twinGet: onDevice(REQUEST.twinGet),
  twinGetResult: onDevice(ANSWER.twinGetResult),
  stateUpdate: onDevice(REQUEST.stateUpdate),
  stateUpdateResult: onDevice(ANSWER.stateUpdateResult),
  membershipGet: onNode('membership/get'),
  membershipGetResult: onNode(NODE_ANSWER.membershipGetResult),
  membershipUpdated: onNode(NODE_ANSWER.membershipUpdated),
};

/** A device's answer topics (`id` may be a filter such as `{ns}/+`). */
export const deviceAnswerTopics = (id: string) => Object.values(ANSWER).map((action) => onDevice(action)(id));

const requests = new Set<string>(Object.values(REQUEST));
const answers = new Set<string>(Object.values(ANSWER));
const deviceAnswerEndings = Object.values(ANSWER).map((action) => `/${action}`);
const nodeAnswerEndings = Object.values(NODE_ANSWER).map((action) => `/${action}`);

/** `$hw/events/device/{ns}/{name}/{action}` → its parts; undefined for any other topic. */
export function splitDeviceTopic(topic: string): { namespace: string; name: string; action: string } | undefined {
  if (!topic.startsWith(DEVICE_PREFIX)) return undefined;
  const namespaceEnd = topic.indexOf('/', DEVICE_PREFIX.length);
  const nameEnd = namespaceEnd < 0 ? -1 : topic.indexOf('/', namespaceEnd + 1);
  if (nameEnd < 0) return undefined;
  return { namespace: topic.slice(DEVICE_PREFIX.length, namespaceEnd), name: topic.slice(namespaceEnd + 1, nameEnd), action: topic.slice(nameEnd + 1) };
}

export const isDeviceRequest = (action: string) => requests.has(action);
export const isDeviceAnswer = (action: string) => answers.has(action);

/**
 * Whether `topic` looks like one the agent answers on: a forged delta or membership update
 * would reach every mapper listening there. Judged by the ending, so one with extra levels
 * (`…/{ns}/{name}/x/twin/update/delta`), which a `$hw/events/device/#` subscriber also gets, counts too.
 */
export function isAgentAnswer(topic: string): boolean {
  if (topic.startsWith(DEVICE_PREFIX)) return deviceAnswerEndings.some((ending) => topic.endsWith(ending));
  if (topic.startsWith(NODE_PREFIX)) return nodeAnswerEndings.some((ending) => topic.endsWith(ending));
  return false;
}
