/** Runs the in-process mappers for the devices this node manages. */
import type { Device, DeviceModel } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { TwinChange, Twins } from '../twin/twins.js';
import type { Mapper } from './contract.js';
import { DeviceRunner } from './runner.js';

/**
 * A device as its runner sees it: the Device and its DeviceModel without where they were read
 * from or the twin values they seed (a new desired value is a twin change, not a new device).
 */
function servedAs(device: Device, models: Map<string, DeviceModel>): string {
  const { source: _deviceSource, reported: _reported, properties, ...rest } = device as Device & { source?: unknown };
  const { source: _modelSource, ...model } = (models.get(device.modelId) ?? {}) as DeviceModel & { source?: unknown };
  return JSON.stringify([rest, properties.map(({ desired: _desired, ...property }) => property), model]);
}

export class MapperHost {
  private readonly runners = new Map<string, DeviceRunner>();
  /** What each device was served (or refused) as, to tell whether a new catalog changes it. */
  private readonly served = new Map<string, string>();
  private readonly byProtocol = new Map<string, Mapper>();
  private readonly onChange = (change: TwinChange) => {
    if (change.delta) void this.runners.get(change.deviceId)?.applyDesired();
  };

  constructor(
    mappers: Mapper[],
    private readonly twins: Twins,
    private readonly log: Logger,
    private readonly busUrl: string,
  ) {
    for (const mapper of mappers) for (const protocol of mapper.protocols) this.byProtocol.set(protocol, mapper);
  }

  start(devices: Device[], models: Map<string, DeviceModel>): void {
    this.twins.on('changed', this.onChange);
    for (const device of devices) this.serve(device, models);
    this.log.info({ devices: this.runners.size, protocols: [...this.byProtocol.keys()] }, 'mapper host started');
  }

  /**
   * Serves `devices` from now on: runners of devices that are gone or whose Device or DeviceModel
   * changed are stopped, new and changed ones started; the others keep their connections.
   */
  async apply(devices: Device[], models: Map<string, DeviceModel>): Promise<void> {
    const wanted = new Map(devices.map((d) => [d.id, d]));
    const stale = [...this.served.keys()].filter((id) => {
      const device = wanted.get(id);
      return !device || this.served.get(id) !== servedAs(device, models);
    });
    await Promise.all(stale.map((id) => this.runners.get(id)?.stop()));
    for (const id of stale) {
      this.runners.delete(id);
      this.served.delete(id);
    }
    for (const device of devices) if (!this.served.has(device.id)) this.serve(device, models);
  }

  private serve(device: Device, models: Map<string, DeviceModel>): void {
    const mapper = this.byProtocol.get(device.protocol.name);
    const model = models.get(device.modelId);
    this.served.set(device.id, servedAs(device, models));
    if (!mapper || !model) {
      const reason = mapper ? `no DeviceModel ${device.modelId}` : `no mapper for protocol ${JSON.stringify(device.protocol.name)}`;
      this.log.warn({ device: device.id, protocol: device.protocol.name, reason }, 'device not served');
      this.twins.setState(device.id, 'unhealthy', 'mapper', reason);
      return;
    }
    const runner = new DeviceRunner(device, model, mapper, this.twins, this.log, this.busUrl);
    this.runners.set(device.id, runner);
    runner.start();
  }

  async stop(): Promise<void> {
    this.twins.off('changed', this.onChange);
    await Promise.all([...this.runners.values()].map((r) => r.stop()));
    this.runners.clear();
    this.served.clear();
  }
}
