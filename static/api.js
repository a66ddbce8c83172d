// The one JSON fetch wrapper: the server's error format becomes a thrown Error.

/**
 * `method path [body]` -> parsed JSON (null for 204); throws an Error with `status` and `body`.
 * `signal` (an AbortSignal) cancels the request: it then throws an `AbortError`.
 */
export async function api(method, path, body, { signal } = {}) {
  const options = { method, headers: { Accept: "application/json" }, cache: "no-store", signal };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) toLogin();
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `request failed (${response.status})`);
    error.status = response.status;
    error.body = data;
    throw error;
  }
  return data;
}

/** The server asks for a login (none yet, or it ended): go there, and come back here after. */
export function toLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}
