/** Generated Device/DeviceModel manifests for benchmarks: N devices × M float properties. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function deviceName(i: number): string {
  return `bench-${String(i).padStart(3, '0')}`;
}

export function propertyName(j: number): string {
  return `p${j}`;
}

/** Writes the manifests to a new temp dir and returns it. `protocol` picks the mapper (none serves `bench`). */
export function writeBenchProfiles(devices: number, properties: number, protocol: string, collectCycleMs = 1000): string {
  const dir = mkdtempSync(join(tmpdir(), 'edge-agent-bench-'));
  const props = Array.from({ length: properties }, (_, j) => propertyName(j));
  const model = [
    'apiVersion: devices.kubeedge.io/v1beta1',
    'kind: DeviceModel',
    'metadata: {name: bench-model, namespace: default}',
    'spec:',
    `  protocol: ${protocol}`,
    '  properties:',
    ...props.map((p) => `    - {name: ${p}, type: FLOAT, accessMode: ReadOnly}`),
  ].join('\n');
  const device = (i: number) =>
    [
      'apiVersion: devices.kubeedge.io/v1beta1',
      'kind: Device',
      `metadata: {name: ${deviceName(i)}, namespace: default}`,
      'spec:',
      '  deviceModelRef: {name: bench-model}',
      `  protocol: {protocolName: ${protocol}}`,
      '  properties:',
      ...props.map((p) => `    - {name: ${p}, collectCycle: ${collectCycleMs}, visitors: {configData: {function: random}}}`),
    ].join('\n');
  const docs = [model, ...Array.from({ length: devices }, (_, i) => device(i))];
  writeFileSync(join(dir, 'bench.yaml'), docs.join('\n---\n') + '\n');
  return dir;
}
