/** The mqtt mapper's configuration (device configData, property visitors) and payload handling. */
import * as v from 'valibot';
import type { Device, DeviceModel } from '../../src/devices/model.js';
import type { PropertyValue } from '../../src/mapperhost/contract.js';
import { parseAt, parseDeviceConfig, type DeviceConfig } from '../../src/mapperhost/device-config.js';
import { parseWith, type Parsed } from '../../src/schema.js';

const nonEmpty = v.pipe(v.string(), v.minLength(1, 'must not be empty'));
const brokerUrl = v.pipe(nonEmpty, v.regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^/\s]+/, 'expected a broker URL (mqtt://host:port)'));
/** Topics a device publishes on exactly: wildcards would need one value per matching topic. */
const stateTopic = v.pipe(nonEmpty, v.regex(/^[^+#]+$/, 'must not contain the wildcards + or #'));
const jsonPath = v.pipe(nonEmpty, v.regex(/^[^.]+(\.[^.]+)*$/, 'expected a dot path such as ENERGY.Power'));
const qos = v.picklist([0, 1, 2], 'expected 0, 1 or 2');

const tlsUrl = /^(mqtts|wss|ssl):/;

export const protocolSchema = v.pipe(
  v.strictObject({
    url: v.optional(brokerUrl),
    username: v.optional(v.string()),
    /** The password itself, or `passwordFile`: a file holding it (a trailing newline is not part of it), so the manifest holds no secret. */
    password: v.optional(v.string()),
    passwordFile: v.optional(nonEmpty),
    clientId: v.optional(nonEmpty),
    /** PEM files for a TLS broker: the CAs to verify it with, and a client certificate and its key. */
    ca: v.optional(nonEmpty),
    cert: v.optional(nonEmpty),
    key: v.optional(nonEmpty),
  }),
  v.forward(v.check((c) => c.password === undefined || c.passwordFile === undefined, 'password and passwordFile exclude each other'), ['passwordFile']),
  v.forward(v.check((c) => (c.cert === undefined) === (c.key === undefined), 'cert and key go together'), ['cert']),
  v.forward(
    v.check((c) => (c.ca === undefined && c.cert === undefined) || tlsUrl.test(c.url ?? ''), 'ca, cert and key need a TLS broker url (mqtts://host:8883)'),
    ['url'],
  ),
);

const visitorFields = {
  jsonPath: v.optional(jsonPath),
  commandTopic: v.optional(stateTopic),
  commandTemplate: v.optional(v.string()),
  retain: v.optional(v.boolean()),
  qos: v.optional(qos),
};
const readableVisitor = v.strictObject({ stateTopic, ...visitorFields });
/** A WriteOnly property has nothing to read back, so it needs a commandTopic instead. */
const writeOnlyVisitor = v.strictObject({ stateTopic: v.optional(stateTopic), ...visitorFields, commandTopic: stateTopic });

export type ProtocolConfig = v.InferOutput<typeof protocolSchema>;
export type VisitorConfig = v.InferOutput<typeof writeOnlyVisitor> | v.InferOutput<typeof readableVisitor>;

/** The broker to use and each property's topics, or every issue with its place in the manifest. */
export function parseMqtt(device: Device, model: DeviceModel): Parsed<DeviceConfig<ProtocolConfig, VisitorConfig>> {
  return parseDeviceConfig(
    device,
    model,
    (d) => parseAt(protocolSchema, d.protocol.config, d.fields.protocol),
    (visitor, property) => parseWith(property.accessMode === 'WriteOnly' ? writeOnlyVisitor : readableVisitor, visitor),
  );
}

export class PayloadError extends Error {}

/** The property's value in a payload: the raw text, or the number/string/boolean at `path` in its JSON. */
export function extract(payload: string, json: unknown, path: string | undefined): PropertyValue {
  if (path === undefined) {
    if (payload === '') throw new PayloadError('empty payload');
    return payload;
  }
  let node = json;
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) throw new PayloadError(`no ${path} in the payload`);
    node = (node as Record<string, unknown>)[key];
  }
  if (typeof node === 'number' || typeof node === 'string' || typeof node === 'boolean') return node;
  throw new PayloadError(`${path} is ${node === null ? 'null' : Array.isArray(node) ? 'an array' : 'an object'}, not a value`);
}

export function render(template: string, value: PropertyValue): string {
  return template.replaceAll('{{value}}', String(value));
}
