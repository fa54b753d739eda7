/**
 * The edge side of KubeEdge's cloud link (EdgeHub), as the cloud module: registers the node and
 * keeps its status fresh, stores the Devices and DeviceModels the cloud sends and offers them to
 * the device catalog as a source, applies desired values the cloud sets, stores and acknowledges
 * the other resources it sends (as metamanager does), and sends twin and state reports from the
 * outbox in order, each until the cloud answers it, however long the cloud is away.
 */
import type { Database } from '../db/database.js';
import type { DeviceCatalog } from '../devices/catalog.js';
import { parseObject } from '../devices/load.js';
import type { Route } from '../http/router.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { TelemetryModule } from '../telemetry/index.js';
import type { Twins } from '../twin/twins.js';
import type { CloudConfig } from './config.js';
import { CloudLink, type LinkStatus } from './link.js';
import type { PathPlacer } from '../wifi/paths.js';
import { contentObject, MessageError, responseTo, type BeehiveMessage } from './message.js';
import { metaOperation, podNotRun, resourceOf, storedValue } from './metadata.js';
import { kubernetesTime, nodeFacts, patchNodeStatus, registerNode, registration } from './node.js';
import { CloudObjects, type CloudKind } from './objects.js';
import { Outbox, type OutboxStats, type Report } from './outbox.js';
import { CloudResources, type StoredResource } from './resources.js';
import { cloudMigrations } from './tables.js';
import { stageReports } from './uplink.js';
import { stateDialect, type KubeEdgeVersion } from './versions.js';

/** Bytes waiting in the socket above which sending pauses: the drain after an outage must not buffer the queue in memory. */
const HIGH_WATER_BYTES = 1024 * 1024;
const PAGE = 200;
const OBJECT_RESOURCE = /^([^/]+)\/(device|devicemodel)\/([^/]+)$/;
const CLOUD_UPDATED = /^device\/(.+)\/twin\/cloud_updated$/;

export interface EdgeHubDeps {
  config: CloudConfig;
  node: string;
  dataDir: string;
  db: Database;
  twins: Twins;
  catalog: DeviceCatalog;
  telemetry: TelemetryModule;
  /** Where the link leaves from: a trusted WiFi identity's address (wifi.sensitive), or the system's choice. */
  paths: PathPlacer;
  log: Logger;
}

/** `GET /api/v1/cloud` while the link is enabled. */
export interface CloudStatus {
  link: LinkStatus;
  kubeedgeVersion: KubeEdgeVersion;
  registered: boolean;
  /** The outbox's counts, and how old its oldest queued report is (when one is queued). */
  outbox: OutboxStats & { oldestAgeMs?: number };
  devices: number;
  models: number;
  /** Every other resource the cloud sent and the agent stored (pods are stored, not run). */
  resources: StoredResource[];
  unsupportedMessages: number;
}

/** What a started cloud module holds. */
interface Started {
  objects: CloudObjects;
  resources: CloudResources;
  outbox: Outbox;
  link: CloudLink;
}

export class EdgeHub implements Module {
  readonly name = MODULE.cloud;
  readonly routes: Route[] = [{ method: 'GET', path: '/api/v1/cloud', handle: () => this.status() }];
  private readonly log: Logger;
  private parts?: Started;
  private removers: Remove[] = [];
  private statusTimer?: NodeJS.Timeout;
  private resendTimer?: NodeJS.Timeout;
  private registration?: string;
  private registered = false;
  private readonly since = kubernetesTime();
  private pumpScheduled = false;
  private unsupported = 0;
  /** Downstream objects are applied one at a time, in the order the cloud sent them. */
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly deps: EdgeHubDeps) {
    this.log = deps.log.child({ module: 'cloud' });
  }

  /** Starts before the catalog's first load: the stored Devices are a source of the catalog, served at once, also without the cloud. */
  async start(): Promise<void> {
    const { db, twins, catalog, config, node, dataDir } = this.deps;
    db.migrate(cloudMigrations);
    const objects = new CloudObjects(db);
    const resources = new CloudResources(db);
    const outbox = new Outbox(db, config.queue, this.log);
    const link = new CloudLink(config, node, dataDir, this.deps.paths, this.log);
    this.parts = { objects, resources, outbox, link };
    this.removers = [
      catalog.addSource({ name: MODULE.cloud, origin: 'cloud', list: () => objects.list() }),
      stageReports(twins, outbox, (id, property) => catalog.reportsToCloud(id, property), stateDialect(config.kubeedgeVersion)),
      // Reports become sendable once committed: the twin announces its changes after the commit.
      twins.onChange(() => this.schedulePump()),
      twins.onState(() => this.schedulePump()),
    ];
    link.on('connected', () => void this.connected());
    link.on('disconnected', () => this.disconnected());
    link.on('message', (message) => this.receive(message));
    link.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.statusTimer);
    clearInterval(this.resendTimer);
    for (const remove of this.removers.splice(0)) remove();
    await this.applying;
    await this.parts?.link.stop();
  }

  private get started(): Started {
    if (!this.parts) throw new Error('the cloud module is not started');
    return this.parts;
  }

  /** The outbox, for the replay bench and tests. */
  get outbox(): Outbox {
    return this.started.outbox;
  }

  status(): CloudStatus {
    const { objects, resources, outbox, link } = this.started;
    const all = objects.list();
    return {
      link: link.state(),
      kubeedgeVersion: this.deps.config.kubeedgeVersion,
      registered: this.registered,
      outbox: { ...outbox.stats(), oldestAgeMs: outbox.oldestAgeMs() },
      devices: all.filter((o) => o.kind === 'device').length,
      models: all.filter((o) => o.kind === 'devicemodel').length,
      resources: resources.list(),
      unsupportedMessages: this.unsupported,
    };
  }
  private async connected(): Promise<void> {
    const { link, outbox } = this.started;
    outbox.rewind();
    this.schedulePump();
    const { config, node, telemetry } = this.deps;
    clearInterval(this.resendTimer);
    // Checked four times per resendMs: a report is sent again between 1 and 1.25 resendMs after its last send.
    this.resendTimer = setInterval(() => this.resendOverdue(), Math.ceil(config.resendMs / 4));
    const facts = await nodeFacts(node, telemetry);
    const register = registerNode(config, node, facts, this.since);
    this.registration = register.header.msg_id;
    link.send(register);
    clearInterval(this.statusTimer);
    this.statusTimer = setInterval(() => link.send(patchNodeStatus(config, node, facts, this.since)), config.nodeStatusIntervalMs);
  }

  private disconnected(): void {
    clearInterval(this.statusTimer);
    clearInterval(this.resendTimer);
    this.registered = false;
    this.started.outbox.rewind();
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
    const { window } = this.deps.config;
    const { link, outbox } = this.started;
    while (link.connected && outbox.inFlightCount < window) {
      if (link.buffered > HIGH_WATER_BYTES) {
        setTimeout(() => this.schedulePump(), 10);
        return;
      }
      const reports = outbox.take(Math.min(PAGE, window - outbox.inFlightCount));
      if (reports.length === 0) return;
      for (const report of reports) this.sendReport(report);
    }
  }

  /** Sends again, under the same ids, the reports the cloud left unanswered for resendMs; they leave the window, so the pump goes on. */
  private resendOverdue(): void {
    const { link, outbox } = this.started;
    if (!link.connected) return;
    const { resendMs, window } = this.deps.config;
    const due = outbox.overdue(resendMs, window);
    if (due.length > 0) this.log.warn({ reports: due.length, unconfirmed: outbox.stats().unconfirmed, resendMs }, 'reports the cloud did not answer sent again');
    for (const report of due) this.sendReport(report);
    this.schedulePump();
  }

  private sendReport(report: Report): void {
    // The content is stored as JSON text: spliced in as it is, not parsed and serialised again.
    const frame = `{"header":{"msg_id":${JSON.stringify(report.msgId)},"timestamp":${Date.now()}},"route":{"source":"twin","group":"resource","operation":"update","resource":${JSON.stringify(report.resource)}},"content":${report.content}}`;
    this.started.link.send(frame);
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
    const meta = group === 'resource' ? metaOperation(message) : undefined;
    if (meta) {
      this.applying = this.applying
        .then(() => this.applyResource(message, meta))
        .catch((error: unknown) => this.log.error({ err: error, resource }, 'resource from the cloud not stored'));
      return;
    }
    this.unsupported++;
    this.log.warn({ operation, group, resource, msgId: message.header.msg_id }, 'unsupported message from the cloud ignored');
  }

  private answered(message: BeehiveMessage, parent: string): void {
    if (this.started.outbox.answered(parent)) {
      this.schedulePump();
      return;
    }
    if (parent !== this.registration) return;
    const answer = registration(message.content);
    this.registered = answer.registered;
    if (answer.registered) this.log.info({ node: this.deps.node, resource: message.route.resource, existed: answer.existed }, 'node registered with the cloud');
    else this.log.warn({ node: this.deps.node, err: answer.error }, 'the cloud refused the node registration');
  }

  /** Stores or deletes the resource, then acknowledges it once committed, as metamanager does; a pod's status says it is not run. */
  private async applyResource(message: BeehiveMessage, operation: 'store' | 'delete'): Promise<void> {
    const { resources, link } = this.started;
    const resource = resourceOf(message);
    if (operation === 'delete') resources.delete(resource.key);
    else resources.put({ key: resource.key, type: resource.type, resourceVersion: resource.resourceVersion }, storedValue(message));
    await this.deps.db.flushed();
    link.send(responseTo(message, 'OK'));
    this.log.info({ resource: resource.key, operation: message.route.operation, resourceVersion: resource.resourceVersion }, 'resource from the cloud stored');
    const status = operation === 'store' && resource.type === 'pod' ? podNotRun(message, resource) : undefined;
    if (status) link.send(status);
  }

  /** Stores the object, acknowledges it once stored (as MetaManager does), then has the catalog serve it. */
  private async applyObject(message: BeehiveMessage, kind: CloudKind, id: string): Promise<void> {
    const { operation } = message.route;
    const { objects, link } = this.started;
    try {
      if (operation === 'delete') {
        objects.delete(kind, id);
      } else if (operation === 'insert' || operation === 'update') {
        const object = contentObject(message);
        const parsed = parseObject(object);
        const item = kind === 'device' ? parsed.device : parsed.model;
        if (parsed.errors.length === 0 && !item) parsed.errors.push(`not a ${kind === 'device' ? 'Device' : 'DeviceModel'}`);
        if (item && item.id !== id) parsed.errors.push(`metadata names ${item.id}, the resource ${id}`);
        if (parsed.errors.length > 0) throw new MessageError(`invalid ${kind} ${id}: ${parsed.errors.join('; ')}`);
        objects.put({ kind, id, resourceVersion: message.header.resourceversion, object: object as Record<string, unknown> });
      } else {
        throw new MessageError(`unsupported operation ${operation} on ${kind} ${id}`);
      }
      await this.deps.db.flushed();
      link.send(responseTo(message, 'OK'));
      this.log.info({ kind, id, operation, resourceVersion: message.header.resourceversion }, 'object from the cloud stored');
      // The catalog seeds a new device with its desired values, and a changed one with those the cloud changed.
      await this.deps.catalog.reload('cloud');
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      // Acknowledged all the same: the cloud would resend it unchanged, to the same end.
      link.send(responseTo(message, `error: ${error.message}`));
      this.log.error({ err: error.message, msgId: message.header.msg_id }, 'object from the cloud refused');
    }
  }

  /** Desired values the way KubeEdge before v1beta1 sent them: `twin/cloud_updated` with expected values. */
  private cloudUpdated(message: BeehiveMessage, deviceId: string): void {
    try {
      const content = contentObject(message) as { twin?: Record<string, { expected?: { value?: string } } | null> };
      if (!content?.twin || typeof content.twin !== 'object') throw new MessageError('cloud_updated without a twin');
      const update = Object.fromEntries(Object.entries(content.twin).flatMap(([key, twin]) => (twin?.expected ? [[key, { expected: twin.expected }]] : [])));
      this.deps.twins.update(deviceId, update, 'cloud');
    } catch (error) {
      this.log.warn({ device: deviceId, err: (error as Error).message }, 'desired values from the cloud refused');
    }
  }
}

