/**
 * Schemas of the KubeEdge Device and DeviceModel manifests, as the CRDs of
 * devices.kubeedge.io/v1alpha2 and v1beta1 define them. Unknown fields pass, as the
 * Kubernetes API server prunes rather than rejects them; what the agent relies on is checked.
 */
import { z } from 'zod';

const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS-1123 name').max(253);
const scalar = z.union([z.string(), z.number(), z.boolean()]);
const looseObject = z.record(z.string(), z.unknown());

const metadata = z.looseObject({
  name,
  namespace: name.optional(),
  labels: z.record(z.string(), z.string()).nullish(),
});

const accessMode = z.enum(['ReadWrite', 'ReadOnly', 'WriteOnly']);
const number = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/)]).transform(Number);

/** Twin values in manifests: KubeEdge keeps them as strings, YAML may give numbers or booleans. */
const twinValue = z.looseObject({
  value: scalar.transform(String).optional(),
  metadata: z.looseObject({ type: z.string().optional(), timestamp: scalar.optional() }).nullish(),
});
const statusTwins = z
  .looseObject({
    twins: z
      .array(z.looseObject({ propertyName: z.string().min(1), reported: twinValue.nullish(), desired: twinValue.nullish() }))
      .nullish(),
  })
  .nullish();

// ---- v1alpha2 ----

const alpha2TypeSpec = z.looseObject({
  accessMode: accessMode.default('ReadWrite'),
  maximum: number.optional(),
  minimum: number.optional(),
  unit: z.string().optional(),
  defaultValue: scalar.optional(),
});
const alpha2PropertyType = z
  .object({
    int: alpha2TypeSpec.optional(),
    string: alpha2TypeSpec.optional(),
    double: alpha2TypeSpec.optional(),
    float: alpha2TypeSpec.optional(),
    boolean: alpha2TypeSpec.optional(),
    bytes: alpha2TypeSpec.optional(),
  })
  .strict()
  .refine((t) => Object.values(t).filter(Boolean).length === 1, 'exactly one of int, string, double, float, boolean, bytes');

export const deviceModelV1alpha2 = z.looseObject({
  apiVersion: z.literal('devices.kubeedge.io/v1alpha2'),
  kind: z.literal('DeviceModel'),
  metadata,
  spec: z.looseObject({
    properties: z.array(z.looseObject({ name: z.string().min(1), description: z.string().optional(), type: alpha2PropertyType })).default([]),
  }),
});

const cycle = z.number().int().nonnegative();
const alpha2Visitor = z.looseObject({
  propertyName: z.string().min(1),
  collectCycle: cycle.optional(),
  reportCycle: cycle.optional(),
  customizedProtocol: z.looseObject({ protocolName: z.string().min(1), configData: looseObject.nullish() }).optional(),
});

export const deviceV1alpha2 = z.looseObject({
  apiVersion: z.literal('devices.kubeedge.io/v1alpha2'),
  kind: z.literal('Device'),
  metadata,
  spec: z.looseObject({
    deviceModelRef: z.looseObject({ name }),
    protocol: z
      .looseObject({
        common: looseObject.nullish(),
        customizedProtocol: z.looseObject({ protocolName: z.string().min(1), configData: looseObject.nullish() }).optional(),
      })
      .optional(),
    nodeSelector: z
      .looseObject({
        nodeSelectorTerms: z.array(
          z.looseObject({
            matchExpressions: z.array(z.looseObject({ key: z.string(), operator: z.string(), values: z.array(z.string()).default([]) })).default([]),
          }),
        ),
      })
      .nullish(),
    propertyVisitors: z.array(alpha2Visitor).default([]),
  }),
  status: statusTwins,
});

// ---- v1beta1 ----

export const deviceModelV1beta1 = z.looseObject({
  apiVersion: z.literal('devices.kubeedge.io/v1beta1'),
  kind: z.literal('DeviceModel'),
  metadata,
  spec: z.looseObject({
    protocol: z.string().optional(),
    properties: z
      .array(
        z.looseObject({
          name: z.string().min(1),
          description: z.string().optional(),
          type: z
            .string()
            .transform((t) => t.toLowerCase())
            .pipe(z.enum(['int', 'float', 'double', 'string', 'boolean', 'bytes', 'stream'])),
          accessMode: accessMode.default('ReadWrite'),
          maximum: number.optional(),
          minimum: number.optional(),
          unit: z.string().optional(),
        }),
      )
      .default([]),
  }),
});

export const deviceV1beta1 = z.looseObject({
  apiVersion: z.literal('devices.kubeedge.io/v1beta1'),
  kind: z.literal('Device'),
  metadata,
  spec: z.looseObject({
    deviceModelRef: z.looseObject({ name }),
    nodeName: z.string().optional(),
    protocol: z.looseObject({ protocolName: z.string().min(1), configData: looseObject.nullish() }),
    properties: z
      .array(
        z.looseObject({
          name: z.string().min(1),
          visitors: z.looseObject({ protocolName: z.string().optional(), configData: looseObject.nullish() }).nullish(),
          collectCycle: cycle.optional(),
          reportCycle: cycle.optional(),
          reportToCloud: z.boolean().default(false),
          desired: twinValue.nullish(),
        }),
      )
      .default([]),
  }),
  status: statusTwins,
});

export const manifestHeader = z.looseObject({ apiVersion: z.string(), kind: z.string() });

export type DeviceModelV1alpha2 = z.infer<typeof deviceModelV1alpha2>;
export type DeviceV1alpha2 = z.infer<typeof deviceV1alpha2>;
export type DeviceModelV1beta1 = z.infer<typeof deviceModelV1beta1>;
export type DeviceV1beta1 = z.infer<typeof deviceV1beta1>;
