// HTTP helper for the Parley API: JSON in and out, bearer token, one error type.

let token = null;
let onUnauthorized = () => {};

// The 401 codes that mean "this token no longer signs anyone in". A 401 with another
// code (a wrong current password on a password change or an account deletion) is an
// answer to that request, not a reason to sign out.
const SIGNED_OUT_CODES = new Set(['session_revoked', 'token_expired', 'invalid_token', 'missing_token']);

export function setToken(t) {
  token = t;
}

export function getToken() {
  return token;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the API. `body` may be a plain object (sent as JSON) or FormData.
 * Resolves with the parsed JSON (or the Response itself with `raw`).
 */
export async function api(method, path, body, { raw = false, signal } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  if (!res.ok) {
    let code = `http_${res.status}`;
    let message = res.status === 404 ? 'Not found' : res.statusText || 'Request failed';
    try {
      const j = await res.json();
      if (j && j.error) {
        code = j.error.code || code;
        message = j.error.message || message;
      }
    } catch {
      /* not JSON */
    }
    // the handler signs out (and tells why) when the session itself is gone
    if (res.status === 401 && token && (SIGNED_OUT_CODES.has(code) || (code === 'http_401' && !path.startsWith('/api/auth/')))) {
      onUnauthorized(code);
    }
    throw new ApiError(res.status, code, message);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);

/**
 * A single-use, 30-second ticket for `/ws?ticket=`: the long-lived token travels
 * only in the Authorization header, never in a URL (URLs end up in access logs).
 */
export async function wsTicket() {
  const { ticket } = await post('/api/auth/ws-ticket');
  return ticket;
}
export const del = (path, opts) => api('DELETE', path, undefined, opts);
export const patch = (path, body, opts) => api('PATCH', path, body, opts);
