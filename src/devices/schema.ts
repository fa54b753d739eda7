/**
 * Schemas of the KubeEdge Device and DeviceModel manifests, as the CRDs of
 * devices.kubeedge.io/v1alpha2 and v1beta1 define them. Unknown fields pass, as the
 * Kubernetes API server prunes rather than rejects them; what the agent relies on is checked.
 */
import * as v from 'valibot';

const name = v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS-1123 name'), v.maxLength(253));
const nonEmpty = v.pipe(v.string(), v.minLength(1, 'must not be empty'));
const scalar = v.union([v.string(), v.number(), v.boolean()], 'must be a string, number or boolean');
const looseRecord = v.record(v.string(), v.unknown());

const metadata = v.looseObject({
  name,
  namespace: v.optional(name),
  labels: v.nullish(v.record(v.string(), v.string())),
});

const accessMode = v.picklist(['ReadWrite', 'ReadOnly', 'WriteOnly']);
const number = v.pipe(
  v.union([v.number(), v.pipe(v.string(), v.regex(/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/, 'must be a number'))], 'must be a number'),
  v.transform(Number),
);

/** Twin values in manifests: KubeEdge keeps them as strings, YAML may give numbers or booleans. */
const twinValue = v.looseObject({
  value: v.optional(v.pipe(scalar, v.transform(String))),
  metadata: v.nullish(v.looseObject({ type: v.optional(v.string()), timestamp: v.optional(scalar) })),
});
const statusTwins = v.nullish(
  v.looseObject({
    twins: v.nullish(v.array(v.looseObject({ propertyName: nonEmpty, reported: v.nullish(twinValue), desired: v.nullish(twinValue) }))),
  }),
);

// ---- v1alpha2 ----

const alpha2TypeSpec = v.looseObject({
  accessMode: v.optional(accessMode, 'ReadWrite'),
  maximum: v.optional(number),
  minimum: v.optional(number),
  unit: v.optional(v.string()),
  defaultValue: v.optional(scalar),
});
const alpha2PropertyType = v.pipe(
  v.strictObject({
    int: v.optional(alpha2TypeSpec),
    string: v.optional(alpha2TypeSpec),
    double: v.optional(alpha2TypeSpec),
    float: v.optional(alpha2TypeSpec),
    boolean: v.optional(alpha2TypeSpec),
    bytes: v.optional(alpha2TypeSpec),
  }),
  v.check((t) => Object.values(t).filter(Boolean).length === 1, 'exactly one of int, string, double, float, boolean, bytes'),
);

export const deviceModelV1alpha2 = v.looseObject({
  apiVersion: v.literal('devices.kubeedge.io/v1alpha2'),
  kind: v.literal('DeviceModel'),
  metadata,
  spec: v.looseObject({
    properties: v.optional(v.array(v.looseObject({ name: nonEmpty, description: v.optional(v.string()), type: alpha2PropertyType })), []),
  }),
});

const cycle = v.pipe(v.number(), v.integer(), v.minValue(0));
const customizedProtocol = v.looseObject({ protocolName: nonEmpty, configData: v.nullish(looseRecord) });
const alpha2Visitor = v.looseObject({
  propertyName: nonEmpty,
  collectCycle: v.optional(cycle),
  reportCycle: v.optional(cycle),
  customizedProtocol: v.optional(customizedProtocol),
});

export const deviceV1alpha2 = v.looseObject({
  apiVersion: v.literal('devices.kubeedge.io/v1alpha2'),
  kind: v.literal('Device'),
  metadata,
  spec: v.looseObject({
    deviceModelRef: v.looseObject({ name }),
    protocol: v.optional(v.looseObject({ common: v.nullish(looseRecord), customizedProtocol: v.optional(customizedProtocol) })),
    nodeSelector: v.nullish(
      v.looseObject({
        nodeSelectorTerms: v.array(
          v.looseObject({
            matchExpressions: v.optional(v.array(v.looseObject({ key: v.string(), operator: v.string(), values: v.optional(v.array(v.string()), []) })), []),
          }),
        ),
      }),
    ),
    propertyVisitors: v.optional(v.array(alpha2Visitor), []),
  }),
  status: statusTwins,
});

// ---- v1beta1 ----

export const deviceModelV1beta1 = v.looseObject({
  apiVersion: v.literal('devices.kubeedge.io/v1beta1'),
  kind: v.literal('DeviceModel'),
  metadata,
  spec: v.looseObject({
    protocol: v.optional(v.string()),
    properties: v.optional(
      v.array(
        v.looseObject({
          name: nonEmpty,
          description: v.optional(v.string()),
          type: v.pipe(
            v.string(),
            v.transform((t) => t.toLowerCase()),
            v.picklist(['int', 'float', 'double', 'string', 'boolean', 'bytes', 'stream'], 'must be one of INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM'),
          ),
          accessMode: v.optional(accessMode, 'ReadWrite'),
          maximum: v.optional(number),
          minimum: v.optional(number),
          unit: v.optional(v.string()),
        }),
      ),
      [],
    ),
  }),
});

export const deviceV1beta1 = v.looseObject({
  apiVersion: v.literal('devices.kubeedge.io/v1beta1'),
  kind: v.literal('Device'),
  metadata,
  spec: v.looseObject({
    deviceModelRef: v.looseObject({ name }),
    nodeName: v.optional(v.string()),
    protocol: v.looseObject({ protocolName: nonEmpty, configData: v.nullish(looseRecord) }),
    properties: v.optional(
      v.array(
        v.looseObject({
          name: nonEmpty,
          visitors: v.nullish(v.looseObject({ protocolName: v.optional(v.string()), configData: v.nullish(looseRecord) })),
          collectCycle: v.optional(cycle),
          reportCycle: v.optional(cycle),
          reportToCloud: v.optional(v.boolean(), false),
          desired: v.nullish(twinValue),
          /** Where the mapper pushes values itself (HTTP, MQTT, OTEL, a database): a DMI mapper's business, passed through. */
          pushMethod: v.nullish(looseRecord),
        }),
      ),
      [],
    ),
    methods: v.nullish(v.array(v.looseObject({ name: nonEmpty, description: v.optional(v.string()), propertyNames: v.optional(v.array(v.string())) }))),
    stateReport: v.nullish(v.looseObject({ reportCycle: v.optional(v.number()), reportToCloud: v.optional(v.boolean()) })),
  }),
  status: statusTwins,
});

export const manifestHeader = v.looseObject({ apiVersion: v.string(), kind: v.string() });

export type DeviceModelV1alpha2 = v.InferOutput<typeof deviceModelV1alpha2>;
export type DeviceV1alpha2 = v.InferOutput<typeof deviceV1alpha2>;
export type DeviceModelV1beta1 = v.InferOutput<typeof deviceModelV1beta1>;
export type DeviceV1beta1 = v.InferOutput<typeof deviceV1beta1>;
