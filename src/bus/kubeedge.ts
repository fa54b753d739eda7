/**
 * The KubeEdge (≥ 1.16.2) device protocol on the event bus, as EdgeCore's eventbus and
 * devicetwin modules speak it: `$hw/events/device/{ns}/{name}/…` and `$hw/events/node/{node}/…`.
 */
import { randomUUID } from 'node:crypto';
import type { GenericSchema, InferOutput } from 'valibot';
import type { DeviceCatalog } from '../devices/catalog.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { DeviceRecord } from '../twin/types.js';
import { TwinError, twinDocument } from '../twin/types.js';
import type { StateChange, TwinChange, Twins } from '../twin/twins.js';
import type { Bus } from './bus.js';
import { decode, membershipGetPayload, stateUpdatePayload, twinGetPayload, twinUpdatePayload } from './payloads.js';

export const DEVICE_PREFIX = '$hw/events/device/';
export const NODE_PREFIX = '$hw/events/node/';

export const topics = {
  twinUpdate: (id: string) => `${DEVICE_PREFIX}${id}/twin/update`,
  twinUpdateResult: (id: string) => `${DEVICE_PREFIX}${id}/twin/update/result`,
  twinDelta: (id: string) => `${DEVICE_PREFIX}${id}/twin/update/delta`,
  twinDocument: (id: string) => `${DEVICE_PREFIX}${id}/twin/update/document`,
  twinGet: (id: string) => `${DEVICE_PREFIX}${id}/twin/get`,
  twinGetResult: (id: string) => `${DEVICE_PREFIX}${id}/twin/get/result`,
  stateUpdate: (id: string) => `${DEVICE_PREFIX}${id}/state/update`,
  stateUpdateResult: (id: string) => `${DEVICE_PREFIX}${id}/state/update/result`,
  membershipGet: (node: string) => `${NODE_PREFIX}${node}/membership/get`,
  membershipGetResult: (node: string) => `${NODE_PREFIX}${node}/membership/get/result`,
  membershipUpdated: (node: string) => `${NODE_PREFIX}${node}/membership/updated`,
};

/** `$hw/events/device/{ns}/{name}/…` → `{ns}/{name}`, the device id inside devicetwin. */
function deviceIdOf(topic: string): string {
  const nameEnd = topic.indexOf('/', topic.indexOf('/', DEVICE_PREFIX.length) + 1);
  return topic.slice(DEVICE_PREFIX.length, nameEnd);
}

/** The device as membership lists it: no twin, empty fields left out (Go's omitempty). */
function membershipDevice(device: DeviceRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { id: device.id, name: device.name };
  if (device.description) out.description = device.description;
  if (device.state) out.state = device.state;
  if (device.lastOnline) out.last_online = device.lastOnline;
  if (Object.keys(device.attributes).length > 0) out.attributes = device.attributes;
  return out;
}

export interface KubeEdgeProtocolOptions {
  bus: Bus;
  twins: Twins;
  catalog: DeviceCatalog;
  node: string;
  maxPayloadBytes: number;
  log: Logger;
}

export class KubeEdgeProtocol implements Module {
  readonly name = MODULE.kubeedge;
  private readonly bus: Bus;
  private readonly twins: Twins;
  private readonly log: Logger;
  private removers: Remove[] = [];

  constructor(private readonly options: KubeEdgeProtocolOptions) {
    this.bus = options.bus;
    this.twins = options.twins;
    this.log = options.log;
  }

  /** Registers the handlers before the bus starts, so nothing arrives unhandled. */
  async start(): Promise<void> {
    this.removers = [
      this.twins.onChange((change) => this.publishChange(change)),
      this.twins.onState((change) => this.publishState(change)),
      this.options.catalog.onChanged(({ added, removed }) => this.announceMembership(added, removed)),
      this.bus.handle(`${DEVICE_PREFIX}+/+/twin/update`, (topic, payload) => this.onTwinUpdate(topic, payload)),
      this.bus.handle(`${DEVICE_PREFIX}+/+/twin/get`, (topic, payload) => this.onTwinGet(topic, payload)),
      this.bus.handle(`${DEVICE_PREFIX}+/+/state/update`, (topic, payload) => this.onStateUpdate(topic, payload)),
      this.bus.handle(`${NODE_PREFIX}+/membership/get`, (topic, payload) => this.onMembershipGet(topic, payload)),
    ];
  }

  async stop(): Promise<void> {
    for (const remove of this.removers.splice(0)) remove();
  }

  /** `membership/updated`: one message per device, the other list null, as EdgeCore sends it. */
  private announceMembership(added: DeviceRecord[], removed: DeviceRecord[]): void {
    const topic = topics.membershipUpdated(this.options.node);
    for (const device of added) this.send(topic, { added_devices: [membershipDevice(device)], removed_devices: null }, randomUUID());
    for (const device of removed) this.send(topic, { added_devices: null, removed_devices: [membershipDevice(device)] }, randomUUID());
  }

  /** The body is built only when someone can receive it. */
  private send(topic: string, body: Record<string, unknown> | (() => Record<string, unknown>), eventId: string): void {
    if (!this.bus.wants(topic)) return;
    const fields = typeof body === 'function' ? body() : body;
    this.bus.publish(topic, JSON.stringify({ event_id: eventId, timestamp: Date.now(), ...fields }));
  }

  private sendError(topic: string, eventId: string, code: number, reason: string, requestTopic: string): void {
    this.log.warn({ topic: requestTopic, code, reason }, 'rejected device message');
    this.send(topic, { code, reason }, eventId);
  }

  /** The edge of the protocol: size limit, then schema; a failure is answered on `resultTopic`. */
  private accept<S extends GenericSchema>(schema: S, topic: string, payload: Buffer, resultTopic: string): InferOutput<S> | undefined {
    if (payload.length > this.options.maxPayloadBytes) {
      this.sendError(resultTopic, '', 400, `payload of ${payload.length} bytes exceeds the limit of ${this.options.maxPayloadBytes} bytes`, topic);
      return undefined;
    }
    const request = decode(schema, payload);
    if (request.ok) return request.value;
    this.sendError(resultTopic, request.eventId, 400, request.reason, topic);
    return undefined;
  }

  /**
   * Runs a twin change and waits for its commit, so the message is acknowledged only once it
   * is on disk. Returns the batch's commit promise rather than awaiting it, so nothing of the
   * request outlives the synchronous change.
   */
  private commit(change: () => void, topic: string, resultTopic: string, eventId: string): Promise<void> | undefined {
    try {
      change();
    } catch (error) {
      const code = error instanceof TwinError ? error.status : 500;
      this.sendError(resultTopic, eventId, code, (error as Error).message, topic);
      return undefined;
    }
    return this.twins.flushed().catch((error: unknown) => this.sendError(resultTopic, eventId, 500, `Update twin failed: ${(error as Error).message}`, topic));
  }

  private onTwinUpdate(topic: string, payload: Buffer): Promise<void> | undefined {
    const id = deviceIdOf(topic);
    const resultTopic = topics.twinUpdateResult(id);
    const request = this.accept(twinUpdatePayload, topic, payload, resultTopic);
    if (!request) return undefined;
    return this.commit(() => this.twins.update(id, request.twin, 'mqtt', request.event_id), topic, resultTopic, request.event_id);
  }

  private onTwinGet(topic: string, payload: Buffer): void {
    const id = deviceIdOf(topic);
    const resultTopic = topics.twinGetResult(id);
    const request = this.accept(twinGetPayload, topic, payload, resultTopic);
    if (!request) return;
    const device = this.twins.get(id);
    if (!device) return this.sendError(resultTopic, request.event_id, 404, `Device ${id} not found while getting twin`, topic);
    this.send(resultTopic, { twin: twinDocument(device.twin) }, request.event_id);
  }

  private onStateUpdate(topic: string, payload: Buffer): Promise<void> | undefined {
    const id = deviceIdOf(topic);
    const resultTopic = topics.stateUpdateResult(id);
    const request = this.accept(stateUpdatePayload, topic, payload, resultTopic);
    if (!request) return undefined;
    return this.commit(() => this.twins.setState(id, request.state, 'mqtt'), topic, resultTopic, request.event_id);
  }

  private onMembershipGet(topic: string, payload: Buffer): void {
    const resultTopic = topics.membershipGetResult(this.options.node);
    const request = this.accept(membershipGetPayload, topic, payload, resultTopic);
    if (!request) return;
    const devices = this.twins.list().filter((d) => d.managed);
    this.send(resultTopic, { devices: devices.map(membershipDevice) }, request.event_id);
  }

  /** EdgeCore's order: result (to the requester), document (when something changed), delta. */
  private publishChange(change: TwinChange): void {
    const { deviceId, eventId } = change;
    if (change.origin === 'mqtt') this.send(topics.twinUpdateResult(deviceId), () => ({ twin: change.result }), eventId);
    if (change.changed) this.send(topics.twinDocument(deviceId), () => ({ twin: change.document }), eventId);
    const delta = change.delta;
    if (delta) this.send(topics.twinDelta(deviceId), () => ({ twin: delta.twin, delta: delta.delta }), randomUUID());
  }

  private publishState({ device }: StateChange): void {
    const summary: Record<string, string> = { name: device.name, state: device.state };
    if (device.lastOnline) summary.last_online = device.lastOnline;
    this.send(topics.stateUpdateResult(device.id), { device: summary }, randomUUID());
  }
}
