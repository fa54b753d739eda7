/** The event bus contract shared by the embedded aedes broker and an external broker. */
import { StorageError } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Module, Remove } from '../module.js';

/**
 * Runs for every message whose topic matches its filter, before the message is acknowledged
 * (MQTT QoS 1 PUBACK): what a handler has persisted by the time it resolves is acknowledged;
 * when it rejects (the commit failed), the message is not acknowledged and is sent again.
 */
export type MessageHandler = (topic: string, payload: Buffer) => Promise<void> | void;

/** Logs a handler's failure, except a storage error: the database logs those once, not per message. */
export function handlerFailed(log: Logger): (error: unknown, topic: string) => void {
  return (error, topic) => {
    if (!(error instanceof StorageError)) log.error({ topic, err: error }, 'bus handler failed');
  };
}

/** The event bus is a module: `start` listens (embedded) or connects (external), once the handlers are registered, so nothing arrives unhandled. */
export interface Bus extends Module {
  /** `mqtt://host:port` that devices and mappers connect to, for logs and answers: never with a password. */
  readonly url: string;
  /**
   * The URL the agent's own clients (the mqtt mapper) connect with: it may carry a password
   * (an external broker's, or the embedded broker's login for the agent), so it is only handed
   * to code that connects, never logged or shown.
   */
  readonly connectUrl: string;
  handle(filter: string, handler: MessageHandler): Remove;
  /** False when no one can receive a publish on `topic`, so building the payload can be skipped. */
  wants(topic: string): boolean;
  publish(topic: string, payload: string | Buffer): void;
}

const isWildcard = (level: string | undefined) => level === '+' || level === '#';

/**
 * Compiles an MQTT topic filter with `+` and `#` wildcards ([MQTT-4.7.1]) into a matcher. A
 * filter starting with a wildcard matches no topic starting with `$` [MQTT-4.7.2-1], as the
 * broker routes them.
 */
export function topicFilter(filter: string): (topic: string) => boolean {
  if (!filter.includes('+') && !filter.includes('#')) return (topic) => topic === filter;
  const escape = (level: string) => level.replace(/[.*?^${}()|[\]\\]/g, '\\$&');
  const levels = filter.split('/');
  const pattern = levels
    .map((level, i) => {
      if (level === '+') return '[^/]*';
      // `a/#` also matches `a` itself [MQTT-4.7.1-2].
      if (level === '#') return i === 0 ? '.*' : '(?:/.*)?';
      return escape(level);
    })
    .reduce((acc, part, i) => (i === 0 ? part : levels[i] === '#' ? acc + part : `${acc}/${part}`), '');
  const regex = new RegExp(`^${pattern}$`);
  if (isWildcard(levels[0])) return (topic) => !topic.startsWith('$') && regex.test(topic);
  return (topic) => regex.test(topic);
}

/**
 * Whether some topic matches both filters: a restricted client may subscribe to a filter that
 * overlaps what it may read, and receives only the messages it may read (policy.ts).
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  // [MQTT-4.7.2-1]: a filter starting with a wildcard matches no `$` topic.
  if ((isWildcard(x[0]) && y[0]!.startsWith('$')) || (isWildcard(y[0]) && x[0]!.startsWith('$'))) return false;
  for (let i = 0; ; i++) {
    const p = x[i];
    const q = y[i];
    if (p === '#' || q === '#') return true;
    if (p === undefined || q === undefined) return p === q;
    if (p !== '+' && q !== '+' && p !== q) return false;
  }
}

export class HandlerTable {
  private readonly entries: Array<{ filter: string; matches: (topic: string) => boolean; handler: MessageHandler }> = [];
  /** Promises of handlers whose failure is already reported. */
  private readonly watched = new WeakSet<Promise<void>>();

  add(filter: string, handler: MessageHandler): Remove {
    const entry = { filter, matches: topicFilter(filter), handler };
    this.entries.push(entry);
    return () => {
      const index = this.entries.indexOf(entry);
      if (index >= 0) this.entries.splice(index, 1);
    };
  }

  get filters(): string[] {
    return this.entries.map((e) => e.filter);
  }

  /**
   * Runs the handler of the first matching filter (the agent's filters do not overlap), or
   * returns undefined when none matches or the handler is done at once. A failing handler is
   * reported through `onError`, and the returned promise rejects: the message was not handled
   * (its change not committed), so the broker must not acknowledge it. Handlers return the
   * promise of the batch their change commits in, shared by every message in it: it is passed on
   * as it is and reported once, so a flood does not make a promise per message.
   */
  dispatch(topic: string, payload: Buffer, onError: (error: unknown, topic: string) => void): Promise<void> | undefined {
    const entry = this.entries.find((e) => e.matches(topic));
    if (!entry) return undefined;
    let handled: void | Promise<void>;
    try {
      handled = entry.handler(topic, payload);
    } catch (error) {
      onError(error, topic);
      return Promise.reject(error as Error);
    }
    if (!handled) return undefined;
    if (!this.watched.has(handled)) {
      this.watched.add(handled);
      handled.catch((error: unknown) => onError(error, topic));
    }
    return handled;
  }
}
