/**
 * Transports that devices share (a Modbus line, a connection to an MQTT broker, a Bluetooth
 * controller), counted by user: opened by the first device that asks, closed after the last
 * one lets go, and all closed when the mapper host stops, so none outlives its agent.
 */

export interface Lease<T> {
  transport: T;
  /** Lets go of the transport; the last user's release closes it. Only the first call counts. */
  release(): Promise<void>;
}

interface Entry {
  opened: Promise<unknown>;
  users: number;
  close(): Promise<void>;
}

export class TransportPool {
  private readonly entries = new Map<string, Entry>();
  /** Transports being closed, by key: the same key is opened again only once its old transport is closed (a serial port opens once). */
  private readonly closing = new Map<string, Promise<void>>();

  /**
   * The transport under `key`, opened with `open` if no one uses it yet. Keys start with the
   * mapper's protocol (`modbus:tcp://…`), as mappers share the pool. A failed `open` is not
   * kept: the next acquire tries again.
   */
  async acquire<T>(key: string, open: () => Promise<T> | T, close: (transport: T) => Promise<void>): Promise<Lease<T>> {
    await this.closing.get(key);
    let entry = this.entries.get(key);
    if (!entry) {
      const opened = Promise.resolve().then(open);
      const created: Entry = { opened, users: 0, close: () => opened.then(close) };
      this.entries.set(key, created);
      opened.catch(() => this.entries.get(key) === created && this.entries.delete(key));
      entry = created;
    }
    const owner = entry;
    owner.users++;
    let transport: T;
    try {
      transport = (await owner.opened) as T;
    } catch (error) {
      owner.users--;
      throw error;
    }
    let released = false;
    return {
      transport,
      release: async () => {
        if (released) return;
        released = true;
        if (--owner.users > 0 || this.entries.get(key) !== owner) return;
        await this.retire(key, owner);
      },
    };
  }

  /** Closes every transport, whoever still uses it: the host has stopped its devices. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.entries].map(([key, entry]) => this.retire(key, entry)));
    await Promise.all(this.closing.values());
  }

  private async retire(key: string, entry: Entry): Promise<void> {
    this.entries.delete(key);
    const closed = entry.close().catch(() => undefined);
    this.closing.set(key, closed);
    await closed;
    if (this.closing.get(key) === closed) this.closing.delete(key);
  }
}
