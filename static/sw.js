// The Parley service worker (root scope): keeps the app shell for offline starts,
// shows Web Push notifications and opens the chat they are about.
//
// Caching: the shell (SHELL below: index.html, the stylesheet, every JS module, the
// icons) is stored on install in a cache named after VERSION; a new VERSION drops
// the old caches on activate. Requests are network-first: online, the browser gets
// what the server has now (its file names are not versioned, so a cache-first shell
// would keep old code after a deploy) and the copy is refreshed; offline, the cached
// copy answers, and a navigation to any client route (/, /chat/42, /settings) gets
// the cached index.html. /api, /ws, uploads and anything else not in SHELL are never
// touched: they go to the network as if there were no worker.
//
// Push: the payload is the JSON of docs/PROTOCOL.md ("Web Push"): {type, chatId,
// messageId?, callId?, title, body}. Every push shows a notification (browsers
// require it of userVisibleOnly subscriptions; the server sends none to a user
// with a visible tab, so an open, visible Parley is not doubled). One notification
// per chat (tag "chat-<id>": the newest replaces the one before and counts them);
// a call gets its own ("call-<callId>") with Answer and Decline. A click focuses an
// open Parley tab and tells it where to go (postMessage {type: "parley:open",
// url}), or opens a new one at that URL. Answer/Decline cannot signal from here
// (no WebSocket in a worker):
// they open /chat/<id>?call=<callId>&action=answer|decline and the app does it.

const VERSION = 'v1';
const CACHE = `parley-shell-${VERSION}`;
const SHELL = [
  '/',
  '/index.html',
  '/app.css',
  '/favicon.svg',
  '/manifest.webmanifest',
  '/icons/icon-192.png',
  '/icons/icon-512.png',
  '/js/api.js',
  '/js/app.js',
  '/js/call.js',
  '/js/changes.js',
  '/js/e2ee.js',
  '/js/main.js',
  '/js/media.js',
  '/js/pwa.js',
  '/js/socket.js',
  '/js/ui.js',
  '/js/voice.js',
  '/js/views/attachments.js',
  '/js/views/auth.js',
  '/js/views/chat.js',
  '/js/views/details.js',
  '/js/views/dialogs.js',
  '/js/views/jump.js',
  '/js/views/media-parts.js',
  '/js/views/message-actions.js',
  '/js/views/message-parts.js',
  '/js/views/modal.js',
  '/js/views/search.js',
  '/js/views/settings.js',
  '/js/views/sidebar.js',
  '/js/views/system.js',
  '/js/views/viewer.js',
];
const SHELL_SET = new Set(SHELL);
const ICON = '/icons/icon-192.png';

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // past the HTTP cache: the shell of this version, not an hour-old copy
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('parley-shell-') && key !== CACHE) await caches.delete(key);
    }
    // control the tab that registered us at once (no reload needed for offline use)
    await self.clients.claim();
  })());
});

function isBypassed(url) {
  return url.origin !== self.location.origin || url.pathname === '/api' || url.pathname.startsWith('/api/')
    || url.pathname.startsWith('/ws') || url.pathname.startsWith('/_parley_');
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (isBypassed(url)) return;
  if (req.mode === 'navigate') {
    event.respondWith(navigation(req));
    return;
  }
  if (SHELL_SET.has(url.pathname) && !url.search) event.respondWith(shellFile(req, url.pathname));
});

async function navigation(req) {
  try {
    const res = await fetch(req);
    return res;
  } catch (e) {
    const cache = await caches.open(CACHE);
    const shell = (await cache.match('/index.html')) || (await cache.match('/'));
    if (shell) return shell;
    throw e;
  }
}

async function shellFile(req, path) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(req);
    if (res.ok && res.type === 'basic') cache.put(path, res.clone()).catch(() => {});
    return res;
  } catch (e) {
    const hit = await cache.match(path);
    if (hit) return hit;
    throw e;
  }
}

// ---------- push ----------

const str = (v, max) => (typeof v === 'string' ? v.slice(0, max) : '');
const id = (v) => (typeof v === 'number' || (typeof v === 'string' && /^\d{1,20}$/.test(v)) ? Number(v) : null);

/** What a push payload (an object, or nothing) shows: `{title, options}`. */
async function notificationFor(payload) {
  const p = payload && typeof payload === 'object' ? payload : {};
  const type = p.type === 'call' ? 'call' : 'message';
  const chatId = id(p.chatId);
  const callId = str(p.callId, 64) || null;
  const data = { type, chatId, callId, messageId: id(p.messageId), count: 1 };
  const title = str(p.title, 120) || 'Parley';
  const body = str(p.body, 300) || (type === 'call' ? 'Incoming call' : 'New message');
  const options = {
    body, data, icon: ICON, badge: ICON, renotify: true, timestamp: Date.now(),
    tag: type === 'call' && callId ? `call-${callId}` : chatId ? `chat-${chatId}` : 'parley',
  };
  if (type === 'call') {
    options.requireInteraction = true;
    options.actions = [{ action: 'answer', title: 'Answer' }, { action: 'decline', title: 'Decline' }];
  } else {
    // grouped per chat: the newest replaces the one before, which it counts
    const before = await self.registration.getNotifications({ tag: options.tag });
    const prev = before.find((n) => n.data?.type === 'message');
    if (prev) {
      data.count = (Number(prev.data.count) || 1) + 1;
      options.body = `${body}\n(${data.count} new messages)`;
    }
  }
  return { title, options };
}

async function onPush(event) {
  let payload = null;
  try {
    payload = event.data ? event.data.json() : null;
  } catch {
    payload = null; // not JSON: still say something (a push must show a notification)
  }
  const { title, options } = await notificationFor(payload);
  await self.registration.showNotification(title, options);
}

self.addEventListener('push', (event) => {
  event.waitUntil(onPush(event));
});

// ---------- clicks ----------

/** Where a click on a notification (or one of its actions) leads. */
function targetOf(data, action) {
  const chatId = id(data?.chatId);
  let url = chatId ? `/chat/${chatId}` : '/';
  const callId = typeof data?.callId === 'string' && /^[\w-]{1,64}$/.test(data.callId) ? data.callId : null;
  if (data?.type === 'call' && callId && (action === 'answer' || action === 'decline')) {
    url += `?call=${encodeURIComponent(callId)}&action=${action}`;
  }
  return url;
}

/**
 * Handles a click: closes the notification, focuses a Parley tab and sends it to
 * the chat, or opens one. Exposed on `self.parley` so tests can call it with a
 * notification from `registration.getNotifications()`.
 */
async function onClick(notification, action = '') {
  notification.close();
  const url = targetOf(notification.data, action);
  const all = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const mine = all.filter((c) => new URL(c.url).origin === self.location.origin);
  const tab = mine.find((c) => c.focused) || mine.find((c) => c.visibilityState === 'visible') || mine[0];
  if (tab) {
    tab.postMessage({ type: 'parley:open', url });
    try {
      await tab.focus();
    } catch {
      /* focusing needs a real click; the tab navigates anyway */
    }
    return { focused: tab.id, url };
  }
  await self.clients.openWindow(url);
  return { opened: url };
}

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(onClick(event.notification, event.action));
});

self.parley = { onPush, onClick, notificationFor, targetOf, VERSION, SHELL };
