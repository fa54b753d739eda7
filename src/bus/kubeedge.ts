/**
 * The KubeEdge (≥ 1.16.2) device protocol on the event bus, as EdgeCore's eventbus and
 * devicetwin modules speak it on the topics of topics.ts; the states `state/update` takes and the
 * last-online field on `state/update/result` are those of the configured KubeEdge release.
 */
import { randomUUID } from 'node:crypto';
import type { GenericSchema, InferOutput } from 'valibot';
import type { DeviceCatalog } from '../devices/catalog.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { DeviceRecord } from '../twin/types.js';
import { TwinError } from '../twin/types.js';
import type { StateChange, TwinChange, Twins } from '../twin/twins.js';
import type { Bus } from './bus.js';
import { stateDialect, NEWEST_KUBEEDGE, type KubeEdgeVersion, type StateDialect } from '../cloud/versions.js';
import { decode, membershipGetPayload, stateUpdatePayload, twinGetPayload, twinUpdatePayload, twinUpdateRefusal, type Refusal } from './payloads.js';
import { RefusalLog } from './refusals.js';
import { DEVICE_PREFIX, topics } from './topics.js';

/** How much of a rejected message's topic and reason a log line keeps. */
const LOGGED_CHARS = 300;

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

/** Builds a request's answer topic from the device id (or node name). */
type AnswerTopic = (id: string) => string;

/** A request whose change waits for its commit. */
interface PendingRequest {
  topic: string;
  answer: AnswerTopic;
  id: string;
  eventId: string;
}

export interface KubeEdgeProtocolOptions {
  bus: Bus;
  twins: Twins;
  catalog: DeviceCatalog;
  node: string;
  maxPayloadBytes: number;
  /** `cloud.kubeedgeVersion`; the newest when not given. */
  kubeedgeVersion?: KubeEdgeVersion;
  log: Logger;
}

export class KubeEdgeProtocol implements Module {
  readonly name = MODULE.kubeedge;
  private readonly bus: Bus;
  private readonly twins: Twins;
  private readonly rejections: RefusalLog;
  private readonly dialect: StateDialect;
  private removers: Remove[] = [];
  /** The requests waiting for the batch being committed. */
  private waiting?: { batch: Promise<void>; requests: PendingRequest[] };

  constructor(private readonly options: KubeEdgeProtocolOptions) {
    this.bus = options.bus;
    this.twins = options.twins;
    this.rejections = new RefusalLog(options.log);
    this.dialect = stateDialect(options.kubeedgeVersion ?? NEWEST_KUBEEDGE);
  }

  /** Registers the handlers before the bus starts, so nothing arrives unhandled. */
  async start(): Promise<void> {
    this.removers = [
      this.twins.onChange((change) => this.publishChange(change)),
      this.twins.onState((change) => this.publishState(change)),
      this.options.catalog.onChanged(({ added, removed }) => this.announceMembership(added, removed)),
      this.bus.handle(topics.twinUpdate('+/+'), (topic, payload) => this.onTwinUpdate(topic, payload)),
      this.bus.handle(topics.twinGet('+/+'), (topic, payload) => this.onTwinGet(topic, payload)),
      this.bus.handle(topics.stateUpdate('+/+'), (topic, payload) => this.onStateUpdate(topic, payload)),
      this.bus.handle(topics.membershipGet('+'), (topic, payload) => this.onMembershipGet(topic, payload)),
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
    // Rate-limited and cut short: a flood of bad payloads, or one with a huge key, must not flood the log.
    this.rejections.refused({ topic: requestTopic.slice(0, LOGGED_CHARS), code, reason: reason.slice(0, LOGGED_CHARS) }, 'rejected device message');
    this.send(topic, { code, reason }, eventId);
  }

  /**
   * The edge of the protocol: size limit, then schema; a failure is answered on the request's
   * answer topic for device `id` (built only then: most messages are fine).
   */
  private accept<S extends GenericSchema>(schema: S, topic: string, payload: Buffer, answer: AnswerTopic, id: string, refusal?: Refusal): InferOutput<S> | undefined {
    if (payload.length > this.options.maxPayloadBytes) {
      this.sendError(answer(id), '', 400, `payload of ${payload.length} bytes exceeds the limit of ${this.options.maxPayloadBytes} bytes`, topic);
      return undefined;
    }
    const request = decode(schema, payload, refusal);
    if (request.ok) return request.value;
    this.sendError(answer(id), request.eventId, 400, request.reason, topic);
    return undefined;
  }

  /** A change the twin refused, answered with its status (a TwinError's, else 500). */
  private refused(error: unknown, request: PendingRequest): undefined {
    const code = error instanceof TwinError ? error.status : 500;
    this.sendError(request.answer(request.id), request.eventId, code, (error as Error).message, request.topic);
    return undefined;
  }

  /**
   * The commit of the batch the request's change is in: the message is acknowledged only once it
   * is on disk. If the batch fails, every request in it is answered 500 and the promise rejects,
   * so none is acknowledged. One promise and one failure handler per batch, not per message:
   * under a flood, a promise each would keep thousands alive until the commit.
   */
  private committed(request: PendingRequest): Promise<void> {
    const batch = this.twins.flushed();
    if (this.waiting?.batch !== batch) {
      const requests: PendingRequest[] = [];
      this.waiting = { batch, requests };
      const settled = () => {
        if (this.waiting?.batch === batch) this.waiting = undefined;
      };
      batch.then(settled, (error: unknown) => {
        settled();
        for (const r of requests) this.sendError(r.answer(r.id), r.eventId, 500, `Update twin failed: ${(error as Error).message}`, r.topic);
      });
    }
    this.waiting.requests.push(request);
    return batch;
  }

  private onTwinUpdate(topic: string, payload: Buffer): Promise<void> | undefined {
    const id = deviceIdOf(topic);
    const body = this.accept(twinUpdatePayload, topic, payload, topics.twinUpdateResult, id, twinUpdateRefusal);
    if (!body) return undefined;
    const request = { topic, answer: topics.twinUpdateResult, id, eventId: body.event_id };
    try {
      this.twins.update(id, body.twin, 'mqtt', body.event_id);
    } catch (error) {
      return this.refused(error, request);
    }
    return this.committed(request);
  }

  private onTwinGet(topic: string, payload: Buffer): void {
    const id = deviceIdOf(topic);
    const request = this.accept(twinGetPayload, topic, payload, topics.twinGetResult, id);
    if (!request) return;
    try {
      this.send(topics.twinGetResult(id), () => ({ twin: this.twins.document(id) }), request.event_id);
    } catch (error) {
      if (!(error instanceof TwinError)) throw error;
      this.sendError(topics.twinGetResult(id), request.event_id, error.status, error.message, topic);
    }
  }

  private onStateUpdate(topic: string, payload: Buffer): Promise<void> | undefined {
    const id = deviceIdOf(topic);
    const body = this.accept(stateUpdatePayload, topic, payload, topics.stateUpdateResult, id);
    if (!body) return undefined;
    const request = { topic, answer: topics.stateUpdateResult, id, eventId: body.event_id };
    if (!this.dialect.states.includes(body.state.toLowerCase())) {
      return this.refused(new TwinError(400, `state ${JSON.stringify(body.state)} is not one of ${this.dialect.states.join(', ')}`), request);
    }
    try {
      this.twins.setState(id, body.state, 'mqtt');
    } catch (error) {
      return this.refused(error, request);
    }
    return this.committed(request);
  }

  private onMembershipGet(topic: string, payload: Buffer): void {
    const resultTopic = topics.membershipGetResult(this.options.node);
    const request = this.accept(membershipGetPayload, topic, payload, topics.membershipGetResult, this.options.node);
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
    this.send(topics.stateUpdateResult(device.id), () => ({ device: this.dialect.device(device.name, device.state, device.lastOnline, new Date()) }), randomUUID());
  }
}
