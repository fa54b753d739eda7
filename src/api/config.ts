/** The `api` section of the agent's config: where the local API listens and which names it answers to. */
import * as v from 'valibot';
import { portNumber } from '../schema.js';

/** A name or address as the `Host` header carries it, without the port: `gateway.lan`, `192.168.1.2`, `[fd00::2]`. */
const hostName = v.pipe(v.string(), v.toLowerCase(), v.regex(/^([a-z0-9.-]+|\[[0-9a-f:.]+\])$/, 'must be a host name or address ([…] around IPv6), without a port'));

export const apiSection = v.strictObject({
  host: v.optional(v.string(), '127.0.0.1'),
  port: v.optional(portNumber, 9180),
  /**
   * Names the `Host` header may carry besides localhost, 127.0.0.1, [::1] and `host`. Any other
   * is refused (421): a web page that rebinds its own DNS name to the gateway carries that name.
   */
  hosts: v.optional(v.array(hostName), []),
  /** A unix socket to serve on as well (mode 0660): who may connect then also follows the file's group. */
  socket: v.optional(v.pipe(v.string(), v.minLength(1))),
});

export type ApiConfig = v.InferOutput<typeof apiSection>;

/** The CLI's token variable: it has the `EDGE_AGENT_` prefix of the config overrides but is none. */
export const API_TOKEN_VARIABLE = 'EDGE_AGENT_TOKEN';
