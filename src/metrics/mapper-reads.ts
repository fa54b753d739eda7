/**
 * Counts the mapper host's reads per device and its mappers' transport requests, as the host
 * reports them (mapperhost/observe.ts): plain increments on the read path, families on scrape.
 */
import type { RequestObserver, RequestOutcome } from '../mapperhost/contract.js';
import type { DeviceObserver, MapperObserver } from '../mapperhost/observe.js';
import { counter, type Family, type Sample } from './family.js';
import { Buckets } from './histogram.js';

class DeviceReads implements DeviceObserver {
  reads = 0;
  failures = 0;
  readonly latency = new Buckets();

  constructor(
    readonly protocol: string,
    readonly device: string,
    readonly requests: RequestObserver,
  ) {}

  read(count: number, failed: number, seconds: number): void {
    this.reads += count;
    this.failures += failed;
    this.latency.observe(seconds);
  }
}

interface TransportRequests {
  protocol: string;
  transport: string;
  outcomes: Record<RequestOutcome, number>;
  values: number;
}

export class MapperReads implements MapperObserver {
  private readonly devices = new Map<string, DeviceReads>();
  /** By protocol, then transport: a line shared by several devices is counted once. */
  private readonly transports = new Map<string, Map<string, TransportRequests>>();

  device(protocol: string, deviceId: string): DeviceObserver {
    const existing = this.devices.get(deviceId);
    if (existing?.protocol === protocol) return existing;
    const reads = new DeviceReads(protocol, deviceId, this.requestsOf(protocol));
    this.devices.set(deviceId, reads);
    return reads;
  }

  forget(deviceId: string): void {
    this.devices.delete(deviceId);
  }

  families(): Family[] {
    const devices = [...this.devices.values()];
    const transports = [...this.transports.values()].flatMap((byTransport) => [...byTransport.values()]);
    const labels = (d: DeviceReads) => ({ protocol: d.protocol, device: d.device });
    const requests = transports.flatMap(({ protocol, transport, outcomes }) =>
      Object.entries(outcomes).map(([outcome, value]): Sample => ({ labels: { protocol, transport, outcome }, value })),
    );
    return [
      counter('edge_agent_mapper_reads_total', 'Property reads by in-process mappers.', devices.map((d) => ({ labels: labels(d), value: d.reads }))),
      counter('edge_agent_mapper_read_failures_total', 'Property reads that ended in an error.', devices.map((d) => ({ labels: labels(d), value: d.failures }))),
      {
        name: 'edge_agent_mapper_read_duration_seconds',
        help: "Time a collect cycle's reads of a device took.",
        type: 'histogram',
        values: devices.flatMap((d) => d.latency.samples('edge_agent_mapper_read_duration_seconds', labels(d))),
      },
      counter('edge_agent_mapper_requests_total', 'Requests on shared transports (Modbus lines), by how they ended.', requests),
      counter(
        'edge_agent_mapper_request_values_total',
        'Values (registers, coils) the answers to those requests carried.',
        transports.map(({ protocol, transport, values }) => ({ labels: { protocol, transport }, value: values })),
      ),
    ];
  }

  private requestsOf(protocol: string): RequestObserver {
    let byTransport = this.transports.get(protocol);
    if (!byTransport) {
      byTransport = new Map();
      this.transports.set(protocol, byTransport);
    }
    const counts = byTransport;
    return {
      request(transport, outcome, values) {
        let entry = counts.get(transport);
        if (!entry) {
          entry = { protocol, transport, outcomes: { ok: 0, exception: 0, timeout: 0, error: 0 }, values: 0 };
          counts.set(transport, entry);
        }
        entry.outcomes[outcome]++;
        entry.values += values;
      },
    };
  }
}
