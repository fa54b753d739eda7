/** A small client of the local HTTP API, for the CLI's client commands. */

export class ApiClientError extends Error {}

export class ApiClient {
  constructor(private readonly base: string) {}

  async request<T>(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(new URL(path, this.base), {
        method,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ApiClientError(`cannot reach the agent at ${this.base} (${cause}): is it running? (--api URL picks another)`);
    }
    const json = (await response.json().catch(() => ({}))) as { reason?: string };
    if (!response.ok) throw new ApiClientError(`${response.status}: ${json.reason ?? response.statusText}`);
    return json as T;
  }
}
