/** Runs the in-process mappers for the devices this node manages, as the catalog announces them. */
import type { DeviceCatalog } from '../devices/catalog.js';
import type { Device, DeviceModel } from '../devices/model.js';
import type { Logger } from '../log.js';
import { MODULE, type Module, type Remove } from '../module.js';
import type { TwinChange, Twins } from '../twin/twins.js';
import type { Mapper } from './contract.js';
import type { MapperObserver } from './observe.js';
import { mappersByProtocol } from './validate.js';
import { DeviceRunner } from './runner.js';
import { TransportPool } from './transports.js';

/**
 * A device as its runner sees it: the Device and its DeviceModel without where they were read
 * from or the twin values they seed (a new desired value is a twin change, not a new device).
 */
function servedAs(device: Device, models: Map<string, DeviceModel>, external: string | undefined): string {
  const { source: _deviceSource, fields: _fields, reported: _reported, properties, ...rest } = device as Device & { source?: unknown };
  const { source: _modelSource, ...model } = (models.get(device.modelId) ?? {}) as DeviceModel & { source?: unknown };
  return JSON.stringify([external, rest, properties.map(({ desired: _desired, ...property }) => property), model]);
}

/** Mapper processes outside the agent (KubeEdge DMI mappers) that take whole protocols over from the in-process mappers. */
export interface ExternalMappers {
  /** The name of the mapper serving the protocol, if one does. */
  nameFor(protocol: string): string | undefined;
  /** Called when a protocol gains or changes its mapper. */
  onChanged(listener: () => void): Remove;
}

export interface MapperHostDeps {
  mappers: readonly Mapper[];
  twins: Twins;
  catalog: DeviceCatalog;
  /** The agent's event bus, whose connectUrl mappers of MQTT devices connect to (known once it listens). */
  bus: { readonly connectUrl: string };
  /** When DMI is enabled: the protocols its mappers serve are not served here. */
  external?: ExternalMappers;
  /** Told about the devices' reads and transport requests, when the agent counts them. */
  observer?: MapperObserver;
  log: Logger;
}

export class MapperHost implements Module {
  readonly name = MODULE.mapperhost;
  private readonly runners = new Map<string, DeviceRunner>();
  /** What each device was served (or refused) as, to tell whether a new catalog changes it. */
  private readonly served = new Map<string, string>();
  private readonly byProtocol: Map<string, Mapper>;
  /** The transports the devices share, closed when the host stops. */
  private readonly transports = new TransportPool();
  private removers: Remove[] = [];
  private readonly twins: Twins;
  private readonly log: Logger;

  constructor(private readonly deps: MapperHostDeps) {
    this.twins = deps.twins;
    this.log = deps.log;
    this.byProtocol = mappersByProtocol(deps.mappers);
  }

  async start(): Promise<void> {
    const { catalog } = this.deps;
    this.removers = [
      this.twins.onChange((change: TwinChange) => {
        if (change.delta) void this.runners.get(change.deviceId)?.applyDesired();
      }),
      catalog.onChanged(({ devices, models }) => this.apply(devices, models)),
      this.twins.onDesire((deviceId, property, value) => this.runners.get(deviceId)?.checkDesired(property, value)),
      ...(this.deps.external ? [this.deps.external.onChanged(() => this.apply(catalog.managed(), catalog.current.models))] : []),
    ];
    for (const device of catalog.managed()) this.serve(device, catalog.current.models);
    this.log.info({ devices: this.runners.size, protocols: [...this.byProtocol.keys()] }, 'mapper host started');
  }

  /**
   * Serves `devices` from now on: runners of devices that are gone or whose Device or DeviceModel
   * changed are stopped, new and changed ones started; the others keep their connections.
   */
  private async apply(devices: Device[], models: Map<string, DeviceModel>): Promise<void> {
    const wanted = new Map(devices.map((d) => [d.id, d]));
    const stale = [...this.served.keys()].filter((id) => {
      const device = wanted.get(id);
      return !device || this.served.get(id) !== servedAs(device, models, this.external(device));
    });
    await Promise.all(stale.map((id) => this.runners.get(id)?.stop()));
    for (const id of stale) {
      this.runners.delete(id);
      this.served.delete(id);
      // A changed device keeps its figures (it is served again below); a removed one's go.
      if (!wanted.has(id)) this.deps.observer?.forget(id);
    }
    for (const device of devices) if (!this.served.has(device.id)) this.serve(device, models);
  }

  /** Who serves the device: `dmi:<mapper>`, `built-in:<protocol>`, or undefined when nobody can. */
  servedBy(device: Device): string | undefined {
    const external = this.external(device);
    if (external) return `dmi:${external}`;
    return this.byProtocol.has(device.protocol.name) ? `built-in:${device.protocol.name}` : undefined;
  }

  private external(device: Device): string | undefined {
    return this.deps.external?.nameFor(device.protocol.name);
  }

  private serve(device: Device, models: Map<string, DeviceModel>): void {
    const external = this.external(device);
    this.served.set(device.id, servedAs(device, models, external));
    if (external) return;
    const mapper = this.byProtocol.get(device.protocol.name);
    const model = models.get(device.modelId);
    if (!mapper || !model) {
      const reason = mapper ? `no DeviceModel ${device.modelId}` : `no mapper for protocol ${JSON.stringify(device.protocol.name)}`;
      this.log.warn({ device: device.id, protocol: device.protocol.name, reason }, 'device not served');
      this.twins.setState(device.id, 'unhealthy', 'mapper', reason);
      return;
    }
    const observer = this.deps.observer?.device(device.protocol.name, device.id);
    const runner = new DeviceRunner(device, model, mapper, this.twins, this.log, this.deps.bus.connectUrl, this.transports, observer);
    this.runners.set(device.id, runner);
    runner.start();
  }

  async stop(): Promise<void> {
    for (const remove of this.removers.splice(0)) remove();
    await Promise.all([...this.runners.values()].map((r) => r.stop()));
    this.runners.clear();
    this.served.clear();
    await this.transports.closeAll();
  }
}
