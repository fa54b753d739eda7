/**
 * A peer's workloads are kept apart from this agent's own: here they are called `<peer>.<name>`.
 * Neither a workload of the config nor one a peer offers may have a '.' in its name, so a peer's
 * workload never takes the name, and with it the definition, of one of this agent's.
 */

export const peerScoped = (peer: string, name: string): string => `${peer}.${name}`;

/** The peer a workload here belongs to, and its name there; no peer for this agent's own. */
export function scopeOf(name: string): { peer?: string; name: string } {
  const dot = name.indexOf('.');
  return dot < 0 ? { name } : { peer: name.slice(0, dot), name: name.slice(dot + 1) };
}
