/** Calling an agent's local API as its clients do: every route but `GET /healthz` wants the bearer token. */

/** `fetch(apiUrl + path, init)` with `Authorization: Bearer <token>` added to the headers `init` has. */
export type ApiFetch = (path: string, init?: RequestInit) => Promise<Response>;

export function authorizedFetch(apiUrl: string, token: string): ApiFetch {
  return (path, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${token}`);
    return fetch(`${apiUrl}${path}`, { ...init, headers });
  };
}
