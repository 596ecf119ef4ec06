// The WebSocket link: connects with a fresh single-use ticket (the token itself never
// goes into the URL, where access logs would keep it), reconnects with capped
// exponential backoff and jitter, matches `ref`s to their `ack` / `error`, and
// dispatches every other frame as an event named after it. `ready` means the server
// has pushed everything undelivered and registered the session.

import { wsTicket } from './api.js';

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const REQUEST_TIMEOUT_MS = 20000;
// The close code of a revoked sign-in session (PROTOCOL.md, "Sessions and passwords").
export const REVOKED_CLOSE_CODE = 4001;

export class SocketError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Socket extends EventTarget {
  constructor(getToken, checkAuth) {
    super();
    this.getToken = getToken;
    this.checkAuth = checkAuth; // called when a connection fails before opening (maybe 401)
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | ready | reconnecting | stopped
    this.attempt = 0;
    this.seq = 0;
    this.pending = new Map();
    this.retryTimer = null;
    this.stopped = true;
    this.fetching = false; // a ticket is on its way; the connect follows
    this.onOnline = () => {
      if (!this.stopped && !this.ws) this.connectNow();
    };
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && !this.stopped && !this.ws) this.connectNow();
      else this.sendVisibility();
    };
  }

  get isReady() {
    return this.state === 'ready';
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(1000, 'signed out');
      } catch {
        /* already closed */
      }
    }
    this.failPending('stopped');
    this.setState('stopped');
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.connect();
  }

  async connect() {
    if (this.stopped || this.ws || this.fetching) return;
    if (!this.getToken()) return;
    // A ticket per attempt: each is single use and expires after 30 s.
    let ticket;
    this.fetching = true;
    try {
      ticket = await wsTicket();
    } catch (e) {
      this.fetching = false;
      if (this.stopped) return;
      this.setState(this.attempt ? 'reconnecting' : 'connecting');
      if (e && e.status === 401) this.checkAuth();
      this.scheduleRetry();
      return;
    }
    this.fetching = false;
    if (this.stopped || this.ws) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let opened = false;
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      opened = true;
      this.setState('open');
    };
    ws.onmessage = (e) => this.onFrame(e.data);
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failPending('disconnected');
      if (this.stopped) return;
      if (e.code === REVOKED_CLOSE_CODE) {
        // The server closed this session for good (signed out elsewhere, password
        // changed, account disabled or deleted): no reconnect, the app signs out.
        this.stop();
        this.dispatchEvent(new CustomEvent('revoked', { detail: { code: e.code } }));
        return;
      }
      this.setState('reconnecting');
      this.dispatchEvent(new CustomEvent('disconnected', { detail: { code: e.code } }));
      if (!opened) this.checkAuth();
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const { event, data, ref } = frame;
    if (ref !== undefined && ref !== null && this.pending.has(ref)) {
      const p = this.pending.get(ref);
      this.pending.delete(ref);
      clearTimeout(p.timer);
      if (event === 'error') p.reject(new SocketError(data?.code || 'error', data?.message || 'request failed'));
      else p.resolve(data);
      return;
    }
    if (event === 'ready') {
      this.attempt = 0;
      this.sendVisibility();
      this.setState('ready');
    }
    this.dispatchEvent(new CustomEvent(event, { detail: data || {} }));
    this.dispatchEvent(new CustomEvent('frame', { detail: { event, data: data || {} } }));
  }

  /**
   * `client:state {visible}`: whether the user can see this tab. The server sends Web
   * Push only to users with no visible session, so a hidden tab still gets
   * notifications. Sent once connected and on every visibility change.
   */
  sendVisibility() {
    this.send('client:state', { visible: document.visibilityState === 'visible' });
  }

  /** Sends a frame without waiting for a reply. Returns false when not connected. */
  send(event, data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ event, data }));
    return true;
  }

  /** Sends a frame with a `ref` and resolves with the `ack` data (rejects on `error`). */
  request(event, data, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SocketError('disconnected', 'not connected'));
    }
    const ref = `r${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new SocketError('timeout', `${event} timed out`));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ event, data, ref }));
    });
  }

  failPending(code) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SocketError(code, 'connection lost'));
    }
    this.pending.clear();
  }
}
