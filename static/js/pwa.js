// The installable app: the service worker (/sw.js, app shell and notifications),
// Web Push subscriptions, the offline notice, and what a hidden tab shows (the
// unread count in the title, a badge on the favicon). See static/sw.js.

import { api, get, post, ApiError } from './api.js';
import { h } from './ui.js';

// ---------- the service worker ----------

let registration = null;

/** Registers /sw.js (root scope). Resolves with the registration, or null without one. */
export async function registerServiceWorker(onOpen) {
  if (!('serviceWorker' in navigator)) return null;
  navigator.serviceWorker.addEventListener('message', (e) => {
    const d = e.data;
    // only our own worker posts here, but the URL is checked anyway: a path of this app
    if (d?.type === 'parley:open' && typeof d.url === 'string' && /^\/(chat\/\d+)?(\?[\w=&%-]*)?$/.test(d.url)) onOpen(d.url);
  });
  try {
    registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    return registration;
  } catch (e) {
    console.warn('service worker not registered', e);
    return null;
  }
}

// ---------- offline ----------

let offlineBanner = null;
let serverDown = false;

function renderOffline() {
  if (!offlineBanner) return;
  const offline = !navigator.onLine || serverDown;
  offlineBanner.hidden = !offline;
  offlineBanner.textContent = !navigator.onLine
    ? 'You are offline. Parley will reconnect when the network is back.'
    : 'Parley cannot reach the server. It will keep trying.';
  document.documentElement.classList.toggle('is-offline', offline);
}

/** The offline notice above everything (the shell's own banner covers the WebSocket). */
export function watchOnline() {
  offlineBanner = h('div', { class: 'offline-banner', role: 'status', 'aria-live': 'polite', hidden: true });
  document.body.prepend(offlineBanner);
  window.addEventListener('online', renderOffline);
  window.addEventListener('offline', renderOffline);
  renderOffline();
}

/** The app could (false) or could not (true) reach the server over HTTP. */
export function setServerDown(down) {
  serverDown = !!down;
  renderOffline();
}

// ---------- a hidden tab: title and favicon ----------

const FAVICON = '/favicon.svg';
const FAVICON_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#6366f1"/><stop offset="1" stop-color="#4338ca"/></linearGradient></defs><rect width="64" height="64" rx="16" fill="url(#g)"/><path d="M16 18h32a4 4 0 0 1 4 4v18a4 4 0 0 1-4 4H28l-10 8v-8h-2a4 4 0 0 1-4-4V22a4 4 0 0 1 4-4z" fill="#fff"/>';

/** The favicon with a red badge and the count (an SVG data URL; CSP allows data: images). */
export function badgedFavicon(n) {
  const label = n > 99 ? '99+' : String(n);
  const size = label.length > 2 ? 20 : label.length > 1 ? 24 : 28;
  const svg = `${FAVICON_SVG}<circle cx="46" cy="18" r="18" fill="#dc2626" stroke="#fff" stroke-width="3"/>`
    + `<text x="46" y="18" dy=".36em" text-anchor="middle" font-family="system-ui,sans-serif" font-weight="700" font-size="${size}" fill="#fff">${label}</text></svg>`;
  return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

let shownBadge = 0;

/** Sets the favicon: the badge with `n` while the tab is hidden and has unread messages, else the plain one. */
export function setFaviconBadge(n) {
  const count = document.visibilityState === 'hidden' ? n : 0;
  if (count === shownBadge) return;
  shownBadge = count;
  let link = document.querySelector('link[rel="icon"]');
  if (!link) {
    link = h('link', { rel: 'icon' });
    document.head.append(link);
  }
  link.type = 'image/svg+xml';
  link.href = count ? badgedFavicon(count) : FAVICON;
}

// ---------- Web Push ----------

export class PushError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** 'unsupported' | 'denied' | 'default' | 'granted' */
export function pushPermission() {
  if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) return 'unsupported';
  return Notification.permission;
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64url.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function ready(ms = 10000) {
  const reg = registration || (await navigator.serviceWorker.getRegistration('/'));
  if (reg?.active) return reg;
  return Promise.race([
    navigator.serviceWorker.ready,
    new Promise((_, reject) => setTimeout(() => reject(new PushError('no_worker', 'The app is still installing; try again in a moment.')), ms)),
  ]);
}

/** This browser's push subscription, if any. */
export async function currentSubscription() {
  if (pushPermission() === 'unsupported') return null;
  try {
    const reg = registration || (await navigator.serviceWorker.getRegistration('/'));
    return (await reg?.pushManager.getSubscription()) || null;
  } catch {
    return null;
  }
}

/**
 * Turns notifications on: asks for permission (only now, after the user asked),
 * subscribes with the server's VAPID key and registers the subscription with the
 * server. Rejects with a PushError whose message can be shown as it is.
 */
export async function enablePush() {
  if (pushPermission() === 'unsupported') throw new PushError('unsupported', 'This browser cannot show notifications from Parley.');
  const perm = await Notification.requestPermission();
  if (perm !== 'granted') {
    throw new PushError('denied', perm === 'denied'
      ? 'Notifications are blocked for Parley in this browser. Allow them in the site settings (the icon next to the address), then try again.'
      : 'Notifications were not allowed.');
  }
  let publicKey;
  try {
    ({ publicKey } = await get('/api/push/vapid-public-key'));
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 503)) {
      throw new PushError('unavailable', 'This Parley server does not send notifications.');
    }
    throw new PushError('server', `Could not turn notifications on: ${e.message}`);
  }
  if (typeof publicKey !== 'string' || !publicKey) throw new PushError('unavailable', 'This Parley server does not send notifications.');
  const reg = await ready();
  let sub = await reg.pushManager.getSubscription();
  const key = keyBytes(publicKey);
  if (sub) {
    // made with another server key (the server's key changed): a new one
    const old = sub.options?.applicationServerKey ? new Uint8Array(sub.options.applicationServerKey) : null;
    if (!old || old.length !== key.length || old.some((b, i) => b !== key[i])) {
      await sub.unsubscribe().catch(() => {});
      sub = null;
    }
  }
  if (!sub) {
    try {
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    } catch (e) {
      throw new PushError('subscribe_failed', `This browser could not register with its push service (${e.message || e.name}). Notifications stay off.`);
    }
  }
  const json = sub.toJSON();
  try {
    await post('/api/push/subscriptions', { endpoint: json.endpoint, keys: { p256dh: json.keys?.p256dh, auth: json.keys?.auth } });
  } catch (e) {
    await sub.unsubscribe().catch(() => {});
    throw new PushError('server', `The server did not accept this device for notifications: ${e.message}`);
  }
  return sub;
}

/**
 * Turns notifications off on this device: the server forgets the subscription
 * (unless `local`: the session is gone, and the server dropped it with it), then
 * the browser does.
 */
export async function disablePush({ local = false } = {}) {
  const sub = await currentSubscription();
  if (!sub) return false;
  if (!local) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 3000);
    await api('DELETE', '/api/push/subscriptions', { endpoint: sub.endpoint }, { signal: ctrl.signal }).catch(() => {});
    clearTimeout(timer);
  }
  await sub.unsubscribe().catch(() => {});
  return true;
}
