/**
 * Runs one device: connects through its mapper, reads properties on their collectCycle,
 * reports them to the twin on their reportCycle, writes desired values, and keeps the
 * device state (online after a good read, offline after repeated failures).
 */
import type { Device, DeviceModel } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { Twins } from '../twin/twins.js';
import { DeviceUnreachableError, type BoundProperty, type DeviceConnection, type Mapper, type MapperContext, type PropertyValue } from './contract.js';
import { fromTwinValue, toTwinValue } from './convert.js';
import type { DeviceObserver } from './observe.js';
import type { TransportPool } from './transports.js';
import { timedOut, withTimeout } from '../timeout.js';

const DEFAULT_CYCLE_MS = 1000;
const MIN_CYCLE_MS = 10;
const READ_TIMEOUT_MS = 5000;
const readTimedOut = timedOut('read', READ_TIMEOUT_MS);
const FAILURES_BEFORE_OFFLINE = 3;
const MAX_RECONNECT_MS = 60_000;

interface Scheduled extends BoundProperty {
  reportCycleMs: number;
  /**
   * A read value is reported once this long has passed since the last report: reportCycleMs less
   * half the shorter cycle, so the collect nearest the due time reports. Node timers fire up to a
   * millisecond early (its loop time is in whole ms): comparing with reportCycleMs itself skips
   * that collect now and then, putting the report off by a whole cycle.
   */
  collectReportsAfterMs: number;
  /** Monotonic time (performance.now()) of the last report: on the wall clock, a step back would hold reports back as long as it stepped. */
  lastReport: number;
  value?: string;
}

export class DeviceRunner {
  private connection?: DeviceConnection;
  /** One pending timer per collect cycle, and one for reconnecting. */
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly groups = new Map<number, Scheduled[]>();
  private readonly properties = new Map<string, Scheduled>();
  /** Expected values already written, by property, as `value@timestamp`. */
  private readonly written = new Map<string, string>();
  /** The device's answer to the last desired value it refused, shown as its state reason until a write succeeds. */
  private writeError?: string;
  private failures = 0;
  private reconnectMs = 1000;
  private stopped = false;
  private readonly warned = new Set<string>();

  constructor(
    private readonly device: Device,
    private readonly model: DeviceModel,
    private readonly mapper: Mapper,
    private readonly twins: Twins,
    private readonly log: Logger,
    private readonly busUrl: string,
    private readonly transports: TransportPool,
    /** Told about every collect cycle's reads, when the agent counts them. */
    private readonly observer?: DeviceObserver,
  ) {
    const modelProperties = new Map(model.properties.map((p) => [p.name, p]));
    for (const property of device.properties) {
      const modelProperty = modelProperties.get(property.name);
      if (!modelProperty) continue;
      const collect = Math.max(MIN_CYCLE_MS, property.collectCycleMs ?? DEFAULT_CYCLE_MS);
      // Not bound to the collect cycle: values a device pushes can be reported more often.
      const reportCycleMs = property.reportCycleMs ?? collect;
      const scheduled: Scheduled = {
        name: property.name,
        visitor: property.visitor,
        model: modelProperty,
        reportCycleMs,
        collectReportsAfterMs: reportCycleMs - Math.min(collect, reportCycleMs) / 2,
        // Never reported: the first value goes out at once, however soon after the process started.
        lastReport: Number.NEGATIVE_INFINITY,
      };
      this.properties.set(property.name, scheduled);
      if (modelProperty.accessMode === 'WriteOnly') continue;
      const group = this.groups.get(collect) ?? [];
      group.push(scheduled);
      this.groups.set(collect, group);
    }
  }

  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    await this.connection?.close().catch(() => undefined);
  }

  /** Why a desired value cannot be written, as far as the mapper tells without the device; undefined when it may be. */
  checkDesired(name: string, value: string): string | undefined {
    const property = this.properties.get(name);
    if (!property || !this.mapper.checkWrite) return undefined;
    let converted: PropertyValue;
    try {
      converted = fromTwinValue(value, property.model.type);
    } catch {
      return undefined; // not of the property's type: the twin refuses it with 400
    }
    return this.mapper.checkWrite(this.device, this.model, name, converted);
  }

  /** Writes desired values that differ from the reported ones, once per desired value. */
  async applyDesired(): Promise<void> {
    const record = this.twins.get(this.device.id);
    if (!this.connection || !record) return;
    for (const [name, twin] of record.twin) {
      const property = this.properties.get(name);
      if (!property || !twin.expected || twin.expected.value === twin.actual?.value) continue;
      const marker = `${twin.expected.value}@${twin.expected.timestamp}`;
      if (this.written.get(name) === marker) continue;
      this.written.set(name, marker);
      if (property.model.accessMode === 'ReadOnly') {
        this.log.warn({ device: this.device.id, property: name }, 'desired value for a read-only property not written');
        continue;
      }
      try {
        await withTimeout(this.connection.write(property, fromTwinValue(twin.expected.value, property.model.type)), READ_TIMEOUT_MS, timedOut('write', READ_TIMEOUT_MS));
        this.log.info({ device: this.device.id, property: name, value: twin.expected.value }, 'desired value written');
        this.writeError = undefined;
        this.twins.setWriteError(this.device.id, name, undefined);
        if (property.model.accessMode !== 'WriteOnly') await this.collect([property], true);
      } catch (error) {
        this.log.warn({ device: this.device.id, property: name, err: (error as Error).message }, 'write failed');
        this.writeError = `write of ${name} failed: ${(error as Error).message}`;
        this.twins.setWriteError(this.device.id, name, (error as Error).message);
        this.setState(record.state); // the record is the twin's own: its state is the current one
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let connection: DeviceConnection | undefined;
    const context: MapperContext = {
      log: this.log.child({ device: this.device.id }),
      busUrl: this.busUrl,
      transports: this.transports,
      push: (property, value) => {
        if (connection && connection === this.connection) this.receive(property, value);
      },
      lost: (error) => {
        if (connection && connection === this.connection) void this.lose(connection, error);
      },
      requests: this.observer?.requests,
    };
    try {
      connection = await this.mapper.connect(this.device, this.model, context);
    } catch (error) {
      const reason = (error as Error).message;
      this.log.warn({ device: this.device.id, protocol: this.device.protocol.name, err: reason, retryMs: this.reconnectMs }, 'device connect failed');
      this.setState(error instanceof DeviceUnreachableError ? 'offline' : 'unhealthy', reason);
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) {
      await connection.close().catch(() => undefined);
      return;
    }
    this.connection = connection;
    for (const [cycle, properties] of this.groups) this.tick(cycle, properties);
    await this.applyDesired();
  }

  private scheduleReconnect(): void {
    this.timers.set('reconnect', setTimeout(() => void this.connect(), this.reconnectMs));
    this.reconnectMs = Math.min(this.reconnectMs * 2, MAX_RECONNECT_MS);
  }

  /** The mapper says the connection is gone: stop reading through it and connect again with backoff. */
  private async lose(connection: DeviceConnection, error: Error): Promise<void> {
    this.connection = undefined;
    for (const [key, timer] of this.timers) if (key.startsWith('collect:')) clearTimeout(timer);
    this.written.clear();
    this.log.warn({ device: this.device.id, err: error.message, retryMs: this.reconnectMs }, 'device connection lost');
    this.setState('offline', error.message);
    await connection.close().catch(() => undefined);
    if (!this.stopped) this.scheduleReconnect();
  }

  /**
   * A value the device sent on its own: reported now, or, within its reportCycle of the last
   * report, once that cycle is over (the latest value then), so a chatty device is throttled and
   * a quiet one is not left waiting for the next collect.
   */
  private receive(name: string, raw: PropertyValue): void {
    const property = this.properties.get(name);
    if (!property || this.stopped) return;
    try {
      property.value = toTwinValue(raw, property.model.type);
    } catch (error) {
      this.log.warn({ device: this.device.id, property: name, err: (error as Error).message }, 'pushed value rejected');
      return;
    }
    this.failures = 0;
    this.setState('online');
    const key = `report:${name}`;
    // The pending report sends the latest value; reporting now too, when its timer runs late, would start a second chain of reports.
    if (this.timers.has(key)) return;
    const wait = property.lastReport + property.reportCycleMs - performance.now();
    if (wait <= 0) return this.reportPushed(property);
    this.timers.set(key, setTimeout(() => this.reportPushed(property), wait));
  }

  private reportPushed(property: Scheduled): void {
    this.timers.delete(`report:${property.name}`);
    if (this.stopped || property.value === undefined) return;
    property.lastReport = performance.now();
    try {
      this.twins.report(this.device.id, { [property.name]: property.value });
    } catch (error) {
      this.log.warn({ device: this.device.id, err: (error as Error).message }, 'twin rejected reported values');
    }
  }

  private tick(cycle: number, properties: Scheduled[]): void {
    if (this.stopped) return;
    void this.collect(properties, false).finally(() => {
      if (!this.stopped) this.timers.set(`collect:${cycle}`, setTimeout(() => this.tick(cycle, properties), cycle));
    });
  }

  private async collect(properties: Scheduled[], forceReport: boolean): Promise<void> {
    const connection = this.connection;
    if (!connection) return;
    let failed = 0;
    let firstError: string | undefined;
    const now = performance.now();
    const report: Record<string, string> = {};
    const values = await this.readGroup(connection, properties);
    properties.forEach((property, i) => {
      try {
        const raw = values[i]!;
        if (raw instanceof Error) throw raw;
        property.value = toTwinValue(raw, property.model.type);
        if (forceReport || now - property.lastReport >= property.collectReportsAfterMs) {
          report[property.name] = property.value;
          property.lastReport = now;
        }
        this.warned.delete(property.name);
      } catch (error) {
        failed++;
        firstError ??= (error as Error).message;
        if (!this.warned.has(property.name)) {
          this.warned.add(property.name);
          this.log.warn({ device: this.device.id, property: property.name, err: (error as Error).message }, 'read failed');
        }
      }
    });
    if (properties.length > 0 && failed === properties.length) {
      this.failures++;
      if (this.failures >= FAILURES_BEFORE_OFFLINE) this.setState('offline', firstError);
    } else {
      this.failures = 0;
      this.setState('online');
    }
    // `now` was taken just before the read: the latency is the whole group's, as the device answered it.
    this.observer?.read(properties.length, failed, (performance.now() - now) / 1000);
    if (Object.keys(report).length === 0 || this.stopped) return;
    try {
      this.twins.report(this.device.id, report);
    } catch (error) {
      this.log.warn({ device: this.device.id, err: (error as Error).message }, 'twin rejected reported values');
    }
  }

  /** One result per property, in order: a value, or the Error that property's read ended in. */
  private async readGroup(connection: DeviceConnection, properties: Scheduled[]): Promise<Array<PropertyValue | Error>> {
    if (connection.readMany) {
      try {
        return await withTimeout(connection.readMany(properties), READ_TIMEOUT_MS, readTimedOut);
      } catch (error) {
        return properties.map(() => error as Error);
      }
    }
    const values: Array<PropertyValue | Error> = [];
    for (const property of properties) {
      values.push(await withTimeout(connection.read(property), READ_TIMEOUT_MS, readTimedOut).catch((error: unknown) => error as Error));
    }
    return values;
  }

  /** `reason` is why the device is in `state`; without one, the last refused write is. */
  private setState(state: string, reason = this.writeError): void {
    const record = this.twins.get(this.device.id);
    if (!record || this.stopped) return;
    if (state === 'online') this.reconnectMs = 1000;
    if (record.state === state) return this.twins.setStateReason(this.device.id, reason);
    this.twins.setState(this.device.id, state, 'mapper', reason);
  }
}
