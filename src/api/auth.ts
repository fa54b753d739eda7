/**
 * Who may use the local API, decided before the router looks at a request, in this order:
 * - 421 for a `Host` that is not a loopback name, `api.host` or in `api.hosts`: a web page that
 *   rebinds its own DNS name to the gateway sends its own name, never one of these;
 * - 401 without `Authorization: Bearer <token>`, 403 with a wrong token (`GET /healthz` and `/readyz` are open);
 * - 415 for a body that is not `application/json`: a browser form or a `text/plain` fetch can
 *   send a request cross-site without asking first, a JSON one cannot.
 * The peer API is not guarded here: its peers prove who they are with pinned TLS certificates.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AgentError } from '../errors.js';
import { requestUrl } from '../http/router.js';
import { HEALTH_PATH } from './health.js';
import { READY_PATH } from './ready.js';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];
/** The probes a service manager or a load balancer calls without a token. */
const OPEN_PATHS = new Set([HEALTH_PATH, READY_PATH]);

/** An echoed header value is cut here: the reason names it, it need not repeat 16 KiB of it. */
const ECHO_CHARS = 100;

/** `host` as a `Host` header carries it: IPv6 addresses in brackets, lower case. */
function hostHeaderName(host: string): string {
  const lower = host.toLowerCase();
  return lower.includes(':') && !lower.startsWith('[') ? `[${lower}]` : lower;
}

/** Digests compare in constant time whatever the lengths: neither the token nor its length leaks through timing. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function echo(value: string): string {
  return JSON.stringify(value.length > ECHO_CHARS ? `${value.slice(0, ECHO_CHARS)}…` : value);
}

export class ApiGuard {
  private readonly hosts: ReadonlySet<string>;
  private readonly tokenDigest: Buffer;

  constructor(options: { token: string; host: string; hosts: readonly string[] }) {
    this.hosts = new Set([...LOOPBACK_NAMES, hostHeaderName(options.host), ...options.hosts]);
    this.tokenDigest = digest(options.token);
  }

  /** Throws the refusal as an `AgentError` with the status and the reason the caller sees; returns when `req` may go on to the router. */
  check(req: IncomingMessage): void {
    this.checkHost(req.headers.host);
    const url = requestUrl(req);
    if (!(req.method === 'GET' && OPEN_PATHS.has(url.pathname))) this.checkToken(req.headers.authorization);
    this.checkBodyType(req);
  }

  private checkHost(host: string | undefined): void {
    if (host === undefined) throw new AgentError(421, 'a Host header is required');
    // The port is any: the API may listen on an ephemeral one, and the name is what a rebinding page cannot fake.
    const name = host.toLowerCase().replace(/:\d*$/, '');
    if (!this.hosts.has(name)) {
      throw new AgentError(421, `Host ${echo(host)} is not served here: use localhost, 127.0.0.1 or [::1], or add the name to api.hosts`);
    }
  }

  private checkToken(authorization: string | undefined): void {
    if (authorization === undefined) throw new AgentError(401, "missing Authorization: Bearer <token>; the token is in api-token in the agent's data dir");
    const bearer = /^Bearer +(\S+) *$/i.exec(authorization);
    if (!bearer) throw new AgentError(401, 'the Authorization header must be Bearer <token>');
    if (!timingSafeEqual(digest(bearer[1]!), this.tokenDigest)) throw new AgentError(403, 'wrong API token');
  }

  private checkBodyType(req: IncomingMessage): void {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return;
    const type = req.headers['content-type'];
    const mediaType = type?.split(';', 1)[0]!.trim().toLowerCase();
    if (mediaType !== 'application/json') throw new AgentError(415, `request bodies must be application/json, not ${type === undefined ? 'untyped' : echo(type)}`);
  }
}
