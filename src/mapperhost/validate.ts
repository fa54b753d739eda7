/** Each mapper's verdict on the devices it would serve, as manifest errors: what `edge-agent validate` and the catalog report. */
import type { Catalog, ManifestError } from '../devices/load.js';
import type { Mapper } from './contract.js';

/** The mapper serving each protocol name. */
export function mappersByProtocol(mappers: readonly Mapper[]): Map<string, Mapper> {
  return new Map(mappers.flatMap((mapper) => mapper.protocols.map((protocol) => [protocol, mapper] as const)));
}

/** A mapper's `path: reason`, apart; a reason without a path is about the document as a whole. */
function fieldError(error: string): { path: string; reason: string } {
  const match = /^(\S*): (.*)$/s.exec(error);
  return match ? { path: match[1]!, reason: match[2]! } : { path: '', reason: error };
}

/**
 * The visitor and protocol errors in the loaded catalog, each at its device's file and document.
 * A device without a mapper for its protocol is not an error here (another process may serve it;
 * the host reports it unhealthy), nor is one without its model (the catalog's error already).
 */
export function validateVisitors(catalog: Pick<Catalog, 'devices' | 'models'>, mappers: readonly Mapper[]): ManifestError[] {
  const byProtocol = mappersByProtocol(mappers);
  const errors: ManifestError[] = [];
  for (const device of catalog.devices.values()) {
    const mapper = byProtocol.get(device.protocol.name);
    const model = catalog.models.get(device.modelId);
    if (!mapper || !model) continue;
    for (const error of mapper.validate(device, model)) errors.push({ ...device.source, ...fieldError(error) });
  }
  return errors;
}
