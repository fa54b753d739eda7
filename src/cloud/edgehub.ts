/**
 * The edge side of KubeEdge's cloud link (EdgeHub): registers the node and keeps its status
 * fresh, stores the Devices and DeviceModels the cloud sends and hands them to the agent,
 * applies desired values the cloud sets, and sends twin and state reports from the outbox in
 * order, each until the cloud answers it, however long the cloud is away.
 */
import type { Device } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { TwinStore } from '../twin/store.js';
import type { Twins } from '../twin/twins.js';
import { parseObject } from '../devices/load.js';
import type { CloudConfig } from './config.js';
import { CloudLink, type LinkStatus } from './link.js';
import { contentObject, MessageError, responseTo, type BeehiveMessage } from './message.js';
import { kubernetesTime, nodeFacts, patchNodeStatus, registerNode } from './node.js';
import { CloudObjects, type CloudKind } from './objects.js';
import { Outbox, type OutboxStats } from './outbox.js';
import { stageReports, type ReportFilter } from './uplink.js';

/** Bytes waiting in the socket above which sending pauses: the drain after an outage must not buffer the queue in memory. */
const HIGH_WATER_BYTES = 1024 * 1024;
const PAGE = 200;
const OBJECT_RESOURCE = /^([^/]+)\/(device|devicemodel)\/([^/]+)$/;
const CLOUD_UPDATED = /^device\/(.+)\/twin\/cloud_updated$/;

function changedDesired(before: Device | undefined, after: Device): Record<string, string> {
  const previous = new Map(before?.properties.map((p) => [p.name, p.desired?.value]));
  return Object.fromEntries(after.properties.flatMap((p) => (p.desired && p.desired.value !== previous.get(p.name) ? [[p.name, p.desired.value]] : [])));
}

export interface EdgeHubOptions {
  config: CloudConfig;
  node: string;
  dataDir: string;
  store: TwinStore;
  twins: Twins;
  log: Logger;
  /** Which changes go up, decided by the agent, which knows the catalog. */
  reports: ReportFilter;
  /** The cloud changed Devices or DeviceModels: the agent serves the new set. */
  objectsChanged: () => Promise<void>;
}

export interface CloudStatus {
  link: LinkStatus;
  registered: boolean;
  outbox: OutboxStats;
  devices: number;
  models: number;
  unsupportedMessages: number;
}

export class EdgeHub {
  readonly objects: CloudObjects;
  readonly outbox: Outbox;
  private readonly link: CloudLink;
  private readonly log: Logger;
  private statusTimer?: NodeJS.Timeout;
  private registration?: string;
  private registered = false;
  private readonly since = kubernetesTime();
  private pumpScheduled = false;
  private unsupported = 0;
  /** Downstream objects are applied one at a time, in the order the cloud sent them. */
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly options: EdgeHubOptions) {
    this.log = options.log.child({ module: 'cloud' });
    this.objects = new CloudObjects(options.store);
    this.outbox = new Outbox(options.store, options.config.queue, this.log);
    stageReports(options.twins, this.outbox, options.reports);
    this.link = new CloudLink(options.config, options.node, options.dataDir, this.log);
    this.link.on('connected', () => void this.connected());
    this.link.on('disconnected', () => this.disconnected());
    this.link.on('message', (message) => this.receive(message));
    // Reports become sendable once committed: the twin announces its changes after the commit.
    options.twins.on('changed', () => this.schedulePump());
    options.twins.on('state', () => this.schedulePump());
  }

  start(): void {
    this.link.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.statusTimer);
    await this.applying;
    await this.link.stop();
  }

  status(): CloudStatus {
    const all = this.objects.list();
    return {
      link: this.link.state(),
      registered: this.registered,
      outbox: this.outbox.stats(),
      devices: all.filter((o) => o.kind === 'device').length,
      models: all.filter((o) => o.kind === 'devicemodel').length,
      unsupportedMessages: this.unsupported,
    };
  }

  private async connected(): Promise<void> {
    this.outbox.rewind();
    this.schedulePump();
    const { config, node } = this.options;
    const facts = await nodeFacts(node);
    const register = registerNode(config, node, facts, this.since);
    this.registration = register.header.msg_id;
    this.link.send(register);
    clearInterval(this.statusTimer);
    this.statusTimer = setInterval(() => this.link.send(patchNodeStatus(config, node, facts, this.since)), config.nodeStatusIntervalMs);
  }

  private disconnected(): void {
    clearInterval(this.statusTimer);
    this.registered = false;
    this.outbox.rewind();
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends queued reports while the window and the socket have room. */
  private pump(): void {
    const { window } = this.options.config;
    while (this.link.connected && this.outbox.inFlightCount < window) {
      if (this.link.buffered > HIGH_WATER_BYTES) {
        setTimeout(() => this.schedulePump(), 10);
        return;
      }
      const reports = this.outbox.take(Math.min(PAGE, window - this.outbox.inFlightCount));
      if (reports.length === 0) return;
      for (const report of reports) {
        // The content is stored as JSON text: spliced in as it is, not parsed and serialised again.
        const frame = `{"header":{"msg_id":${JSON.stringify(report.msgId)},"timestamp":${Date.now()}},"route":{"source":"twin","group":"resource","operation":"update","resource":${JSON.stringify(report.resource)}},"content":${report.content}}`;
        this.link.send(frame);
      }
    }
  }

  private receive(message: BeehiveMessage): void {
    const { operation, resource, group } = message.route;
    const parent = message.header.parent_msg_id;
    if (operation === 'response' && parent) return this.answered(message, parent);
    const object = OBJECT_RESOURCE.exec(resource);
    if (object && group === 'resource') {
      this.applying = this.applying
        .then(() => this.applyObject(message, object[2] as CloudKind, `${object[1]}/${object[3]}`))
        .catch((error: unknown) => this.log.error({ err: error, resource }, 'object from the cloud not applied'));
      return;
    }
    if (resource === 'membership' || resource.startsWith('membership/')) {
      this.log.info({ resource, content: message.content }, 'device membership from the cloud');
      return;
    }
    const cloudUpdated = CLOUD_UPDATED.exec(resource);
    if (cloudUpdated) return this.cloudUpdated(message, cloudUpdated[1]!);
    this.unsupported++;
    this.log.warn({ operation, group, resource, msgId: message.header.msg_id }, 'unsupported message from the cloud ignored');
  }

  private answered(message: BeehiveMessage, parent: string): void {
    if (this.outbox.answered(parent)) {
      this.schedulePump();
      return;
    }
    if (parent !== this.registration) return;
    const answer = message.content as { Err?: unknown } | undefined;
    const error = answer && typeof answer === 'object' ? answer.Err : undefined;
    this.registered = !error || (typeof error === 'object' && Object.keys(error).length === 0);
    if (this.registered) this.log.info({ node: this.options.node, resource: message.route.resource }, 'node registered with the cloud');
    else this.log.warn({ node: this.options.node, err: error }, 'the cloud refused the node registration');
  }

  /** Stores the object, acknowledges it once stored (as MetaManager does), then lets the agent serve it. */
  private async applyObject(message: BeehiveMessage, kind: CloudKind, id: string): Promise<void> {
    const { operation } = message.route;
    let desired: Record<string, string> | undefined;
    try {
      if (operation === 'delete') {
        this.objects.delete(kind, id);
      } else if (operation === 'insert' || operation === 'update') {
        const object = contentObject(message);
        const parsed = parseObject(object);
        const item = kind === 'device' ? parsed.device : parsed.model;
        if (parsed.errors.length === 0 && !item) parsed.errors.push(`not a ${kind === 'device' ? 'Device' : 'DeviceModel'}`);
        if (item && item.id !== id) parsed.errors.push(`metadata names ${item.id}, the resource ${id}`);
        if (parsed.errors.length > 0) throw new MessageError(`invalid ${kind} ${id}: ${parsed.errors.join('; ')}`);
        const before = this.objects.get(kind, id);
        this.objects.put({ kind, id, resourceVersion: message.header.resourceversion, object: object as Record<string, unknown> });
        if (before && parsed.device) desired = changedDesired(parseObject(before.object).device, parsed.device);
      } else {
        throw new MessageError(`unsupported operation ${operation} on ${kind} ${id}`);
      }
      await this.options.store.flushed();
      this.link.send(responseTo(message, 'OK'));
      this.log.info({ kind, id, operation, resourceVersion: message.header.resourceversion }, 'object from the cloud stored');
      await this.options.objectsChanged();
      // A new device is seeded with its desired values; a changed one gets those the cloud changed.
      if (desired && Object.keys(desired).length > 0) this.options.twins.desire(id, desired, 'cloud');
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      // Acknowledged all the same: the cloud would resend it unchanged, to the same end.
      this.link.send(responseTo(message, `error: ${error.message}`));
      this.log.error({ err: error.message, msgId: message.header.msg_id }, 'object from the cloud refused');
    }
  }

  /** Desired values the way KubeEdge before v1beta1 sent them: `twin/cloud_updated` with expected values. */
  private cloudUpdated(message: BeehiveMessage, deviceId: string): void {
    try {
      const content = contentObject(message) as { twin?: Record<string, { expected?: { value?: string } } | null> };
      if (!content?.twin || typeof content.twin !== 'object') throw new MessageError('cloud_updated without a twin');
      const update = Object.fromEntries(Object.entries(content.twin).flatMap(([key, twin]) => (twin?.expected ? [[key, { expected: twin.expected }]] : [])));
      this.options.twins.update(deviceId, update, 'cloud');
    } catch (error) {
      this.log.warn({ device: deviceId, err: (error as Error).message }, 'desired values from the cloud refused');
    }
  }
}

