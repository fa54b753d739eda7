/** Runs the in-process mappers for the devices this node manages. */
import type { Device, DeviceModel } from '../devices/model.js';
import type { Logger } from '../log.js';
import type { TwinChange, Twins } from '../twin/twins.js';
import type { Mapper } from './contract.js';
import { DeviceRunner } from './runner.js';

export class MapperHost {
  private readonly runners = new Map<string, DeviceRunner>();
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
    for (const device of devices) {
      const mapper = this.byProtocol.get(device.protocol.name);
      const model = models.get(device.modelId);
      if (!mapper || !model) {
        const reason = mapper ? `no DeviceModel ${device.modelId}` : `no mapper for protocol ${JSON.stringify(device.protocol.name)}`;
        this.log.warn({ device: device.id, protocol: device.protocol.name, reason }, 'device not served');
        this.twins.setState(device.id, 'unhealthy', 'mapper', reason);
        continue;
      }
      const runner = new DeviceRunner(device, model, mapper, this.twins, this.log, this.busUrl);
      this.runners.set(device.id, runner);
      runner.start();
    }
    this.log.info({ devices: this.runners.size, protocols: [...this.byProtocol.keys()] }, 'mapper host started');
  }

  async stop(): Promise<void> {
    this.twins.off('changed', this.onChange);
    await Promise.all([...this.runners.values()].map((r) => r.stop()));
    this.runners.clear();
  }
}
