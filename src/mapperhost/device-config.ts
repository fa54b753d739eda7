/**
 * A mapper's reading of a device's protocol configuration and visitors: one parse serves both
 * `validate` (the issues, as `path: reason`) and `connect` (the value, or a ConfigError), and
 * every issue is named by its place in the device's manifest.
 */
import type { GenericSchema, InferOutput } from 'valibot';
import type { Device, DeviceModel, ModelProperty } from '../devices/model.js';
import { ConfigError } from '../errors.js';
import { parseWith, type Parsed, type SchemaIssue } from '../schema.js';

/** Issues found inside the block at `base`, named by their full path. */
export function at(base: string, issues: SchemaIssue[]): SchemaIssue[] {
  return issues.map(({ path, message }) => ({ path: path ? `${base}.${path}` : base, message }));
}

/** `input`, the block at `base` in the manifest, parsed with `schema`. */
export function parseAt<S extends GenericSchema>(schema: S, input: unknown, base: string): Parsed<InferOutput<S>> {
  const parsed = parseWith(schema, input);
  return parsed.ok ? parsed : { ok: false, issues: at(base, parsed.issues) };
}

/** `path: message`, or the message alone for an issue about the block as a whole. */
function describe({ path, message }: SchemaIssue): string {
  return path ? `${path}: ${message}` : message;
}

/** Issues in a property's visitor; one listed only in `status.twins` has none, so they become one issue naming it on the property list. */
function inVisitor(device: Device, property: string, issues: SchemaIssue[]): SchemaIssue[] {
  const visitor = device.fields.visitors[property];
  if (visitor !== undefined) return at(visitor, issues);
  return [{ path: device.fields.properties, message: `property ${property} has no visitor (${issues.map(describe).join('; ')})` }];
}

export interface DeviceConfig<P, V> {
  protocol: P;
  /** By property name: the parsed visitor and the model's property. */
  visitors: Map<string, { visitor: V; model: ModelProperty }>;
}

/**
 * Parses the protocol configuration (`protocol` names its issues by full path, as a block may
 * span `configData` and v1alpha2 `common`) and the visitor of each property the model defines
 * (`visitor` names them inside the visitor; undefined skips the property), keeping every issue.
 */
export function parseDeviceConfig<P, V>(
  device: Device,
  model: DeviceModel,
  protocol: (device: Device) => Parsed<P>,
  visitor: (config: Record<string, unknown>, property: ModelProperty) => Parsed<V> | undefined,
): Parsed<DeviceConfig<P, V>> {
  const parsedProtocol = protocol(device);
  const issues = parsedProtocol.ok ? [] : [...parsedProtocol.issues];
  const modelProperties = new Map(model.properties.map((p) => [p.name, p]));
  const visitors = new Map<string, { visitor: V; model: ModelProperty }>();
  for (const property of device.properties) {
    const modelProperty = modelProperties.get(property.name);
    // A property the model does not define is the catalog's error, found before any mapper sees the device.
    if (!modelProperty) continue;
    const parsed = visitor(property.visitor, modelProperty);
    if (parsed?.ok) visitors.set(property.name, { visitor: parsed.value, model: modelProperty });
    else if (parsed) issues.push(...inVisitor(device, property.name, parsed.issues));
  }
  if (!parsedProtocol.ok || issues.length > 0) return { ok: false, issues };
  return { ok: true, value: { protocol: parsedProtocol.value, visitors } };
}

/** What `Mapper.validate` returns: each issue as `path: reason`. */
export function describeIssues(parsed: Parsed<unknown>): string[] {
  return parsed.ok ? [] : parsed.issues.map(describe);
}

/** The value, or what `connect` throws: a ConfigError naming every issue, which the host shows as the device's reason. */
export function valueOrThrow<T>(parsed: Parsed<T>): T {
  if (parsed.ok) return parsed.value;
  throw new ConfigError(describeIssues(parsed).join('; '));
}
