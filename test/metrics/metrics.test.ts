/**
 * `GET /metrics` on a running agent with the demo's virtual devices, a Modbus device on a
 * pymodbus server (one register it refuses) and an MQTT client's twin update, read back as a
 * Prometheus scraper reads it; then the families read from the other modules' status.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloudFamilies } from '../../src/metrics/cloud.js';
import { expose } from '../../src/metrics/exposition.js';
import { wifiFamilies } from '../../src/metrics/wifi.js';
import { workloadsFamilies } from '../../src/metrics/workloads.js';
import { workloadsThroughApi } from '../../src/metrics/workloads-api.js';
import { localRoutes, type LocalApiParts } from '../../src/workloads/api.js';
import { DEMO_PROFILES, startTestAgent, tempDir, type TestAgent } from '../support/agent.js';
import { startModbusTcp, type ModbusTcpServer } from '../support/modbus.js';
import { connectClient } from '../support/mqtt.js';
import { waitFor } from '../support/wait.js';

interface Line {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text format's sample lines (comments left out), labels unescaped. */
function parse(text: string): Line[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k!, v!.replace(/\\(.)/g, '$1')]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

/** The value of the one sample named `name` whose labels include `labels`. */
function sample(lines: Line[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = lines.filter((l) => l.name === name && Object.entries(labels).every(([k, v]) => l.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

const MODBUS_DEVICE = 'default/metrics-modbus-01';
const THERMOMETER = 'default/thermometer-01';

/** A Modbus device reading one register the slave has and one it answers with an exception. */
function modbusProfiles(port: number): string {
  const dir = tempDir('metrics-profiles-');
  const properties = [
    { name: 'good', offset: 0 },
    { name: 'refused', offset: 104 },
  ];
  const docs = [
    {
      apiVersion: 'devices.kubeedge.io/v1beta1',
      kind: 'DeviceModel',
      metadata: { name: 'metrics-modbus', namespace: 'default' },
      spec: { protocol: 'modbus', properties: properties.map((p) => ({ name: p.name, type: 'INT', accessMode: 'ReadOnly' })) },
    },
    {
      apiVersion: 'devices.kubeedge.io/v1beta1',
      kind: 'Device',
      metadata: { name: 'metrics-modbus-01', namespace: 'default' },
      spec: {
        deviceModelRef: { name: 'metrics-modbus' },
        protocol: { protocolName: 'modbus', configData: { communicateMode: 'TCP', ip: '127.0.0.1', port: String(port), slaveID: 1 } },
        properties: properties.map((p) => ({
          name: p.name,
          collectCycle: 200,
          visitors: { protocolName: 'modbus', configData: { register: 'HoldingRegister', offset: p.offset, limit: 1, scale: 1, dataType: 'int16' } },
        })),
      },
    },
  ];
  writeFileSync(join(dir, 'devices.yaml'), docs.map((d) => yaml.dump(d)).join('---\n'));
  return dir;
}

describe('GET /metrics on a running agent', () => {
  let server: ModbusTcpServer;
  let dir: string;
  let agent: TestAgent;
  let client: MqttClient;

  beforeAll(async () => {
    server = await startModbusTcp({ slaves: { 1: { hr: { 0: 7 }, illegal: { hr: [[100, 110]] } } } });
    dir = modbusProfiles(server.port);
    agent = await startTestAgent({ profiles: [DEMO_PROFILES, dir] });
    client = await connectClient(agent.mqttUrl, 'metrics-test-client');
  });

  afterAll(async () => {
    await client?.endAsync();
    await agent?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function scrape(): Promise<Line[]> {
    const response = await agent.api('/metrics');
    expect(response.status).toBe(200);
    return parse(await response.text());
  }

  it('needs the API token, as every route but the probes', async () => {
    expect((await fetch(`${agent.apiUrl}/metrics`)).status).toBe(401);
  });

  it('answers the Prometheus text format, version 0.0.4', async () => {
    const response = await agent.api('/metrics');
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await response.text()).toMatch(/^# HELP edge_agent_mapper_reads_total /m);
  });

  it('counts reads, failures and their latency per protocol and device', async () => {
    const lines = await waitFor('Modbus reads and refusals counted', async () => {
      const lines = await scrape();
      return (sample(lines, 'edge_agent_mapper_read_failures_total', { device: MODBUS_DEVICE }) ?? 0) > 0 && lines;
    });
    const thermometer = { protocol: 'virtualProtocol', device: THERMOMETER };
    expect(sample(lines, 'edge_agent_mapper_reads_total', thermometer)).toBeGreaterThan(0);
    expect(sample(lines, 'edge_agent_mapper_read_failures_total', thermometer)).toBe(0);
    // A histogram: cumulative buckets ending in +Inf, which equals _count.
    const cycles = sample(lines, 'edge_agent_mapper_read_duration_seconds_count', thermometer)!;
    expect(cycles).toBeGreaterThan(0);
    expect(sample(lines, 'edge_agent_mapper_read_duration_seconds_bucket', { ...thermometer, le: '+Inf' })).toBe(cycles);
    const buckets = lines.filter((l) => l.name === 'edge_agent_mapper_read_duration_seconds_bucket' && l.labels.device === THERMOMETER).map((l) => l.value);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    // Both Modbus properties are read each cycle; the refused one fails every time.
    const modbus = { protocol: 'modbus', device: MODBUS_DEVICE };
    expect(sample(lines, 'edge_agent_mapper_reads_total', modbus)).toBeGreaterThanOrEqual(2 * sample(lines, 'edge_agent_mapper_read_failures_total', modbus)!);
  });

  it('counts Modbus requests by outcome and the values they carried', async () => {
    const lines = await scrape();
    const line = lines.find((l) => l.name === 'edge_agent_mapper_requests_total' && l.labels.protocol === 'modbus')!.labels.transport!;
    expect(line).toContain(String(server.port));
    const labels = { protocol: 'modbus', transport: line };
    expect(sample(lines, 'edge_agent_mapper_requests_total', { ...labels, outcome: 'ok' })).toBeGreaterThan(0);
    expect(sample(lines, 'edge_agent_mapper_requests_total', { ...labels, outcome: 'exception' })).toBeGreaterThan(0);
    expect(sample(lines, 'edge_agent_mapper_request_values_total', labels)).toBeGreaterThan(0);
  });

  it('counts twin updates by origin, and the broker its clients and messages', async () => {
    const before = await scrape();
    const mqttBefore = sample(before, 'edge_agent_twin_updates_total', { origin: 'mqtt' })!;
    const topic = `$hw/events/device/${THERMOMETER}/twin/update`;
    // QoS 1: acknowledged once committed, so the update is counted by the time the PUBACK is in.
    await client.publishAsync(topic, JSON.stringify({ event_id: 'metrics-1', timestamp: Date.now(), twin: { note: { actual: { value: 'hello' } } } }), { qos: 1 });
    const lines = await waitFor('the MQTT update counted', async () => {
      const lines = await scrape();
      return sample(lines, 'edge_agent_twin_updates_total', { origin: 'mqtt' }) === mqttBefore + 1 && lines;
    });
    expect(sample(lines, 'edge_agent_twin_updates_total', { origin: 'mapper' })).toBeGreaterThan(0);
    expect(sample(lines, 'edge_agent_twin_updates_total', { origin: 'cloud' })).toBe(0);
    expect(sample(lines, 'edge_agent_broker_clients')).toBeGreaterThanOrEqual(1);
    expect(sample(lines, 'edge_agent_broker_messages_received_total')).toBeGreaterThanOrEqual(1);
    expect(sample(lines, 'edge_agent_broker_messages_published_total')).toBeGreaterThanOrEqual(0);
  });

  it('leaves out what is not enabled: cloud, WiFi, workloads', async () => {
    const names = new Set((await scrape()).map((l) => l.name));
    expect([...names].filter((n) => /^edge_agent_(cloud|wifi|workload)/.test(n))).toEqual([]);
  });
});

describe('metrics read from the modules’ status', () => {
  it('the cloud link and its outbox', async () => {
    const { text } = await expose(
      cloudFamilies({
        link: { connected: true, connects: 3 },
        outbox: { queued: 12, bytes: 700, inFlight: 2, unconfirmed: 0, resent: 1, dropped: 0, coalesced: 4 },
      }),
    );
    const lines = parse(text);
    expect(sample(lines, 'edge_agent_cloud_connected')).toBe(1);
    expect(sample(lines, 'edge_agent_cloud_reconnects_total')).toBe(2);
    expect(sample(lines, 'edge_agent_cloud_outbox_reports')).toBe(12);
    expect(sample(lines, 'edge_agent_cloud_outbox_bytes')).toBe(700);
    expect(sample(lines, 'edge_agent_cloud_outbox_in_flight')).toBe(2);
  });

  it('WiFi identities with their signal and score', async () => {
    const { text } = await expose(
      wifiFamilies({
        backend: 'wpa_supplicant',
        radio: 'wlan0',
        channelCapacity: 1,
        channels: [6],
        aps: [],
        identities: [
          { name: 'id-a', mac: '02:00:00:00:00:01', status: 'connected', signal: -51, score: 42.5 },
          { name: 'id-b', mac: '02:00:00:00:00:02', status: 'connecting' },
        ],
      }),
    );
    const lines = parse(text);
    expect(sample(lines, 'edge_agent_wifi_identities', { status: 'connected' })).toBe(1);
    expect(sample(lines, 'edge_agent_wifi_identities', { status: 'failed' })).toBe(0);
    expect(sample(lines, 'edge_agent_wifi_identity_connected', { identity: 'id-b' })).toBe(0);
    expect(sample(lines, 'edge_agent_wifi_identity_signal_dbm', { identity: 'id-a' })).toBe(-51);
    expect(sample(lines, 'edge_agent_wifi_identity_score_mbps', { identity: 'id-a' })).toBe(42.5);
    expect(sample(lines, 'edge_agent_wifi_identity_signal_dbm', { identity: 'id-b' })).toBeUndefined();
  });

  it('workloads by state and their last migration each way with its downtime', async () => {
    const history = {
      web: [
        { at: '2026-01-02T10:00:00.000Z', event: 'migrated', detail: { peer: 'b', downtimeMs: 42, totalTimeMs: 510 } },
        { at: '2026-01-01T10:00:00.000Z', event: 'migrated', detail: { peer: 'b', downtimeMs: 90, totalTimeMs: 700 } },
      ],
      db: [{ at: '2026-01-03T10:00:00.000Z', event: 'migrated in', detail: { peer: 'c', downtimeMs: 18 } }],
    };
    const families = await workloadsFamilies({
      list: async () => [
        { name: 'web', state: 'migrated' },
        { name: 'db', state: 'running' },
      ],
      history: async (name) => history[name as keyof typeof history],
    });
    const lines = parse((await expose(families)).text);
    expect(sample(lines, 'edge_agent_workloads', { state: 'running' })).toBe(1);
    expect(sample(lines, 'edge_agent_workloads', { state: 'paused' })).toBe(0);
    expect(sample(lines, 'edge_agent_workload_migration_downtime_seconds', { workload: 'web', direction: 'out' })).toBe(0.042);
    expect(sample(lines, 'edge_agent_workload_migration_duration_seconds', { workload: 'web', direction: 'out' })).toBe(0.51);
    expect(sample(lines, 'edge_agent_workload_migration_timestamp_seconds', { workload: 'web', direction: 'out' })).toBe(Date.parse('2026-01-02T10:00:00Z') / 1000);
    expect(sample(lines, 'edge_agent_workload_migration_downtime_seconds', { workload: 'db', direction: 'in' })).toBe(0.018);
    expect(sample(lines, 'edge_agent_workload_migration_duration_seconds', { workload: 'db', direction: 'in' })).toBeUndefined();
  });

  it('reads the workloads through the routes the workloads module serves', async () => {
    const events = [{ at: '2026-01-02T10:00:00.000Z', event: 'migrated', detail: { downtimeMs: 42 } }];
    // Only what the two GET routes reach of a started module.
    const manager = {
      list: () => [{ name: 'web', state: 'migrated' }],
      get: (name: string) => ({ name, state: 'migrated' }),
      history: () => events,
      consoleTail: () => '',
    };
    const view = workloadsThroughApi(localRoutes(() => ({ manager, onDemand: [] }) as unknown as LocalApiParts));
    expect(await view.list()).toEqual([{ name: 'web', state: 'migrated' }]);
    expect(await view.history('web')).toEqual(events);
  });
});
