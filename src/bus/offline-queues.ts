/**
 * aedes keeps the QoS 1/2 messages of every persistent session (`clean: false`) in its memory
 * persistence until the session's client takes them, without a limit: a client that subscribes
 * to `$hw/events/device/#` and goes away would make the broker hold every update for ever. This
 * wraps that persistence so each session holds at most `maxMessages`, and all of them together
 * `maxBytes` (topic and payload); a message beyond is not kept for that session, which MQTT
 * allows a server under its storage limits. The budget is booked when aedes queues a message
 * for a session and given back when it clears one (delivered and acknowledged, or dropped on a
 * clean reconnect).
 */

/** A message as aedes queues it. */
interface QueuedPacket {
  topic: string;
  payload: string | Buffer;
}

/** The two methods of aedes' persistence this wraps, as aedes 1.x calls them: without a callback, answering a promise. */
export interface OutgoingQueues {
  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: QueuedPacket): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<QueuedPacket | undefined>;
}

export interface QueueLimits {
  maxMessages: number;
  maxBytes: number;
}

/** What a message costs the budget. */
function sizeOf(packet: QueuedPacket): number {
  return Buffer.byteLength(packet.topic) + Buffer.byteLength(packet.payload);
}

/** Bounds `persistence`'s offline queues in place; `dropped` hears of each message not kept for a session. */
export function boundOfflineQueues(persistence: OutgoingQueues, limits: QueueLimits, dropped: (clientId: string, reason: string) => void): void {
  /** Messages queued per session, and their bytes over all sessions. */
  const queued = new Map<string, number>();
  let bytes = 0;
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence);
  const clear = persistence.outgoingClearMessageId.bind(persistence);

  const admit = (clientId: string, size: number): boolean => {
    const messages = queued.get(clientId) ?? 0;
    if (messages >= limits.maxMessages) {
      dropped(clientId, `its session holds mqtt.maxQueuedMessages (${limits.maxMessages}) messages`);
      return false;
    }
    if (bytes + size > limits.maxBytes) {
      dropped(clientId, `the sessions hold mqtt.maxQueuedBytes (${limits.maxBytes}) bytes`);
      return false;
    }
    queued.set(clientId, messages + 1);
    bytes += size;
    return true;
  };

  // Only what was booked is given back: a session with nothing booked frees nothing.
  const release = (clientId: string, size: number): void => {
    const messages = queued.get(clientId);
    if (messages === undefined) return;
    if (messages > 1) queued.set(clientId, messages - 1);
    else queued.delete(clientId);
    bytes = Math.max(0, bytes - size);
  };

  persistence.outgoingEnqueueCombi = (subs, packet) => {
    const size = sizeOf(packet);
    return enqueue(
      subs.filter((sub) => admit(sub.clientId, size)),
      packet,
    );
  };
  persistence.outgoingClearMessageId = async (client, packet) => {
    const cleared = await clear(client, packet);
    if (cleared) release(client.id, sizeOf(cleared));
    return cleared;
  };
}
