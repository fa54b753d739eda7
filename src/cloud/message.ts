/**
 * KubeEdge's beehive message as it travels between EdgeHub and CloudHub: one JSON text frame per
 * message (viaduct's WSLaneWithoutPack), `header` {msg_id, parent_msg_id, timestamp in ms,
 * resourceversion, sync}, `route` {source, group, operation, resource} and any JSON `content`.
 */
import { randomUUID } from 'node:crypto';
import * as v from 'valibot';
import { parseWith } from '../schema.js';

const headerSchema = v.object({
  msg_id: v.pipe(v.string(), v.minLength(1)),
  parent_msg_id: v.optional(v.string()),
  timestamp: v.optional(v.number()),
  resourceversion: v.optional(v.string()),
  sync: v.optional(v.boolean()),
  type: v.optional(v.string()),
});

const routeSchema = v.object({
  source: v.optional(v.string(), ''),
  destination: v.optional(v.string()),
  group: v.optional(v.string(), ''),
  operation: v.pipe(v.string(), v.minLength(1)),
  resource: v.optional(v.string(), ''),
});

const messageSchema = v.object({
  header: headerSchema,
  route: routeSchema,
  content: v.optional(v.unknown()),
});

export type BeehiveMessage = v.InferOutput<typeof messageSchema>;
export type Route = BeehiveMessage['route'];

export class MessageError extends Error {}

/** One frame from the peer; a frame that is not a beehive message is a MessageError naming what is wrong. */
export function parseMessage(frame: string): BeehiveMessage {
  let json: unknown;
  try {
    json = JSON.parse(frame);
  } catch (error) {
    throw new MessageError(`malformed JSON: ${(error as Error).message}`);
  }
  const parsed = parseWith(messageSchema, json);
  if (!parsed.ok) throw new MessageError(`not a beehive message: ${parsed.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
  return parsed.value;
}

export function newMessage(route: Route, content: unknown, header: Partial<BeehiveMessage['header']> = {}): BeehiveMessage {
  return { header: { msg_id: randomUUID(), timestamp: Date.now(), ...header }, route, content };
}

/** The answer to `message`, as beehive's NewRespByMessage builds it: same route, operation `response`. */
export function responseTo(message: BeehiveMessage, content: unknown): BeehiveMessage {
  return newMessage({ ...message.route, operation: 'response' }, content, { parent_msg_id: message.header.msg_id });
}

/** Content as an object: CloudHub and EdgeCore send some contents as JSON inside a string. */
export function contentObject(message: BeehiveMessage): unknown {
  if (typeof message.content !== 'string') return message.content;
  try {
    return JSON.parse(message.content);
  } catch {
    throw new MessageError(`content of ${message.route.operation} ${message.route.resource} is a string but not JSON`);
  }
}

/** The WebSocket upgrade headers EdgeHub sends; CloudHub's viaduct reads nothing without `ConnectionUse: msg`. */
export function handshakeHeaders(node: string, projectId: string): Record<string, string> {
  return { node_id: node, project_id: projectId, ConnectionUse: 'msg' };
}

export const DEFAULT_PROJECT_ID = 'e632aba927ea4ac2b575ec1603d56f10';

/** EdgeHub's keepalive: sent every heartbeat, never answered. */
export function keepalive(): BeehiveMessage {
  return newMessage({ source: 'websocket', group: 'resource', operation: 'keepalive', resource: 'node' }, 'ping');
}
