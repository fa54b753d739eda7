/** The event bus contract shared by the embedded aedes broker and an external broker. */

/**
 * Runs for every message whose topic matches its filter, before the message is acknowledged
 * (MQTT QoS 1 PUBACK): what a handler has persisted by the time it resolves is acknowledged.
 */
export type MessageHandler = (topic: string, payload: Buffer) => Promise<void> | void;

export interface Bus {
  /** `mqtt://host:port` that devices and mappers connect to. */
  readonly url: string;
  handle(filter: string, handler: MessageHandler): Promise<void>;
  publish(topic: string, payload: string | Buffer): void;
  close(): Promise<void>;
}

/** MQTT topic filter matching with `+` and `#` wildcards ([MQTT-4.7.1]). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

export class HandlerTable {
  private readonly entries: Array<{ filter: string; handler: MessageHandler }> = [];

  add(filter: string, handler: MessageHandler): void {
    this.entries.push({ filter, handler });
  }

  get filters(): string[] {
    return this.entries.map((e) => e.filter);
  }

  /** Runs the matching handlers; a failing handler is reported, never thrown into the broker. */
  async dispatch(topic: string, payload: Buffer, onError: (error: unknown, topic: string) => void): Promise<void> {
    for (const { filter, handler } of this.entries) {
      if (!topicMatches(filter, topic)) continue;
      try {
        await handler(topic, payload);
      } catch (error) {
        onError(error, topic);
      }
    }
  }

  matches(topic: string): boolean {
    return this.entries.some((e) => topicMatches(e.filter, topic));
  }
}
