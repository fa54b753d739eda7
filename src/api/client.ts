/**
 * A small client of the local HTTP API, for the CLI's client commands: over TCP (`http://host:port`)
 * or the agent's unix socket (`unix:/path`), with the API token.
 */
import { request, type IncomingMessage, type OutgoingHttpHeaders, type RequestOptions } from 'node:http';
import { urlToHttpOptions } from 'node:url';

export class ApiClientError extends Error {}

export interface ApiToken {
  value?: string;
  /** Where it came from, or why there is none: said with a 401 or 403, so a token read from the wrong data dir shows. */
  source: string;
}

const UNIX = 'unix:';

export class ApiClient {
  constructor(
    /** `http://host:port` or `unix:/path/to/socket`. */
    private readonly api: string,
    private readonly token: ApiToken,
  ) {}

  async request<T>(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: OutgoingHttpHeaders = {};
    if (this.token.value !== undefined) headers.authorization = `Bearer ${this.token.value}`;
    if (text !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    let response: Answer;
    try {
      response = await send({ ...this.target(path), method, headers }, text);
    } catch (error) {
      const cause = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ApiClientError(`cannot reach the agent at ${this.api} (${cause}): is it running? (--api URL picks another)`);
    }
    const json = parseJson(response.text) as { reason?: string };
    if (response.status === 401 || response.status === 403) throw new ApiClientError(`${response.status}: ${json.reason ?? response.statusText} (${this.token.source})`);
    if (response.status >= 300) throw new ApiClientError(`${response.status}: ${json.reason ?? response.statusText}`);
    return json as T;
  }

  private target(path: string): RequestOptions {
    if (this.api.startsWith(UNIX)) return { socketPath: this.api.slice(UNIX.length), path };
    return urlToHttpOptions(new URL(path, this.api));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

interface Answer {
  status: number;
  statusText: string;
  text: string;
}

function send(options: RequestOptions, body: string | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
