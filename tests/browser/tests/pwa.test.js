// The installable app: the manifest and its icons, the service worker (it controls
// the page, the app shell opens offline and says so), Web Push notifications shown
// by the worker (a push delivered through the DevTools protocol, grouped per chat, a
// call with Answer/Decline) and their clicks (the open tab goes to the chat; Decline
// declines the call), the Notifications switch when permission is denied, push is
// unsupported or the browser has no push service, the hidden tab (title "(N) Parley",
// a favicon badge, `client:state` frames), and muting a chat.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createRequire } from 'node:module';
import { Parley, launchBrowser, person, register, sleep, cspErrors, repoDir } from '../lib/harness.js';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const ANN = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const BOB = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };

let server;
let browser;
let ann;
let bob;
let chatId;
const annFrames = []; // what ann's page sent on its WebSockets: {event, data}
const annErrors = []; // error frames ann's page received

before(async () => {
  server = await new Parley('pwa').start();
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  bob = await person(browser, server, { name: 'bob' });
  ann.page.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      try {
        annFrames.push(JSON.parse(String(f.payload)));
      } catch {
        /* not JSON */
      }
    });
    ws.on('framereceived', (f) => {
      try {
        const frame = JSON.parse(String(f.payload));
        if (frame.event === 'error') annErrors.push(frame);
      } catch {
        /* not JSON */
      }
    });
  });
  await register(ann.page, ANN);
  await register(bob.page, BOB);
  // a direct chat between them, opened by bob
  await bob.page.getByLabel('Search people').fill('an');
  await bob.page.locator('.person', { hasText: 'ann' }).click();
  await bob.page.waitForURL(/\/chat\/\d+$/);
  chatId = Number(new URL(bob.page.url()).pathname.split('/').pop());
});

after(async () => {
  const errors = [...(ann?.page.errors || []), ...(bob?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

async function send(page, text) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

/** Waits for the service worker to be active and to control the page. Installing
 * fetches the whole shell past the HTTP cache: on a loaded CI box that once took
 * over 15 s, hence the long bound. */
async function controlled(page) {
  await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 45000 });
}

/** The page's service worker, for evaluating in it. */
async function workerOf(context) {
  const url = (w) => new URL(w.url()).pathname === '/sw.js';
  return context.serviceWorkers().find(url) || context.waitForEvent('serviceworker', { predicate: url, timeout: 15000 });
}

async function notifications(page, tag) {
  return page.evaluate(async (t) => {
    const reg = await navigator.serviceWorker.ready;
    const list = await reg.getNotifications(t ? { tag: t } : undefined);
    return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data, actions: n.actions.map((a) => a.action), requireInteraction: n.requireInteraction }));
  }, tag);
}

/**
 * Delivers a push message to the page's service worker through the DevTools
 * protocol (ServiceWorker.deliverPushMessage): a real `push` event.
 */
async function deliverPush(page, payload) {
  const cdp = await page.context().newCDPSession(page);
  const regs = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
    for (const r of registrations) if (!r.isDeleted) regs.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  const scope = `${server.url}/`;
  for (let i = 0; i < 50 && !regs.has(scope); i++) await sleep(100);
  assert.ok(regs.has(scope), `a registration for ${scope}: ${[...regs.keys()]}`);
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: regs.get(scope), data: JSON.stringify(payload) });
  await cdp.detach();
}

async function waitFor(fn, what, ms = 8000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  assert.fail(`timed out: ${what} (last: ${JSON.stringify(last)})`);
}

test('the manifest is linked, valid, and its icons are PNGs of the stated sizes', async () => {
  const p = ann.page;
  const found = await p.evaluate(async () => {
    const link = document.querySelector('link[rel="manifest"]');
    const res = await fetch(link.href);
    const manifest = await res.json();
    const icons = [];
    for (const icon of manifest.icons) {
      const r = await fetch(new URL(icon.src, link.href));
      const bitmap = await createImageBitmap(await r.blob());
      icons.push({ ...icon, status: r.status, type: r.headers.get('content-type'), width: bitmap.width, height: bitmap.height });
    }
    return {
      type: res.headers.get('content-type'), manifest, icons,
      theme: document.querySelector('meta[name="theme-color"]')?.content,
    };
  });
  assert.equal(found.type, 'application/manifest+json');
  const m = found.manifest;
  assert.equal(m.name, 'Parley');
  assert.ok(m.short_name);
  assert.equal(m.start_url, '/');
  assert.equal(m.scope, '/');
  assert.equal(m.display, 'standalone');
  assert.match(m.theme_color, /^#[0-9a-f]{6}$/i);
  assert.match(m.background_color, /^#[0-9a-f]{6}$/i);
  assert.equal(found.theme, m.theme_color);
  const sizes = new Set();
  for (const icon of found.icons) {
    assert.equal(icon.status, 200, icon.src);
    assert.equal(icon.type, 'image/png', icon.src);
    assert.equal(icon.type, icon.type, icon.src);
    assert.equal(`${icon.width}x${icon.height}`, icon.sizes, icon.src);
    sizes.add(icon.sizes);
  }
  assert.ok(sizes.has('192x192') && sizes.has('512x512'), [...sizes].join());
  assert.ok(found.icons.some((i) => i.purpose === 'maskable'), 'a maskable icon');
});

test('the service worker registers, controls the page and caches the whole shell', async () => {
  const p = ann.page;
  await controlled(p);
  const sw = await workerOf(ann.context);
  const shell = await sw.evaluate(() => self.parley.SHELL);
  // every module of the client is in the shell (a new file must be added to sw.js)
  const js = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.js')) js.push(`/${relative(join(repoDir, 'static'), join(dir, e.name))}`);
    }
  };
  walk(join(repoDir, 'static', 'js'));
  const missing = js.filter((f) => !shell.includes(f));
  assert.deepEqual(missing, [], 'modules missing from SHELL in static/sw.js');
  const cached = await p.evaluate(async () => {
    const keys = await caches.keys();
    const cache = await caches.open(keys.find((k) => k.startsWith('parley-shell-')));
    return (await cache.keys()).map((r) => new URL(r.url).pathname);
  });
  for (const f of shell) assert.ok(cached.includes(f), `${f} is cached`);
  assert.ok(!cached.some((f) => f.startsWith('/api') || f.startsWith('/ws')), 'no API responses cached');
  // online, a controlled page's document comes through the worker, from the network,
  // with the server's headers (here: the production CSP of the harness)
  const res = await p.reload();
  assert.ok(res.fromServiceWorker());
  assert.match((await res.allHeaders())['content-security-policy'] || '', /default-src 'self'/);
  await p.locator('.me-status.ok').waitFor({ timeout: 15000 });
});

test('offline, the app shell still opens and says it is offline; back online, it starts', async () => {
  const p = ann.page;
  await controlled(p);
  await ann.context.setOffline(true);
  try {
    // in the running app, its banner says so at once
    await p.locator('.conn-banner', { hasText: 'You are offline' }).waitFor({ timeout: 10000 });
    const res = await p.reload();
    assert.ok(res.fromServiceWorker(), 'the document came from the service worker');
    await p.getByRole('heading', { name: 'You are offline' }).waitFor({ timeout: 15000 });
    const banner = p.locator('.offline-banner');
    await banner.waitFor();
    assert.match(await banner.innerText(), /You are offline/);
    assert.equal(await p.title(), 'Offline · Parley');
    // a client route works offline too (the cached index.html)
    const res2 = await p.goto(`/chat/${chatId}`);
    assert.ok(res2.fromServiceWorker());
    await p.getByRole('heading', { name: 'You are offline' }).waitFor({ timeout: 15000 });
  } finally {
    await ann.context.setOffline(false);
  }
  // the 'online' event reloads: the app starts, the banner goes
  await p.locator('.me-status.ok').waitFor({ timeout: 20000 });
  assert.ok(await p.locator('.offline-banner').isHidden());
  assert.equal(new URL(p.url()).pathname, `/chat/${chatId}`);
});

test('the server down (network up): the shell opens from the cache and says the server is unreachable', async () => {
  const p = ann.page;
  await controlled(p);
  await ann.context.route('**/api/**', (route) => route.abort('connectionrefused'));
  try {
    await p.goto('/');
    await p.getByRole('heading', { name: 'Parley is unreachable' }).waitFor({ timeout: 20000 });
    assert.match(await p.locator('.offline-banner').innerText(), /cannot reach the server/i);
  } finally {
    await ann.context.unroute('**/api/**');
  }
  await p.goto('/');
  await p.locator('.me-status.ok').waitFor({ timeout: 20000 });
  assert.ok(await p.locator('.offline-banner').isHidden());
});

test('a push shows a notification per chat; a click opens the chat in the open tab', async () => {
  const p = ann.page;
  await ann.context.grantPermissions(['notifications'], { origin: server.url });
  await p.goto('/settings');
  await controlled(p);
  await deliverPush(p, { type: 'message', chatId, messageId: 1, title: 'bob', body: 'Lunch at noon?' });
  let shown = await waitFor(async () => (await notifications(p, `chat-${chatId}`))[0], 'the notification');
  assert.equal(shown.title, 'bob');
  assert.equal(shown.body, 'Lunch at noon?');
  assert.equal(shown.tag, `chat-${chatId}`);
  assert.equal(shown.data.chatId, chatId);
  assert.equal(shown.data.type, 'message');
  // a second one for the same chat replaces it and counts
  await deliverPush(p, { type: 'message', chatId, messageId: 2, title: 'bob', body: 'Or at one' });
  await waitFor(async () => (await notifications(p, `chat-${chatId}`))[0]?.data.count === 2, 'the grouped notification');
  const grouped = await notifications(p, `chat-${chatId}`);
  assert.equal(grouped.length, 1, 'one notification per chat');
  assert.match(grouped[0].body, /^Or at one\n\(2 new messages\)$/);
  // hostile or broken payloads still show something harmless
  await deliverPush(p, { type: 'message', chatId: 'x; alert(1)', title: 5, body: null });
  shown = await waitFor(async () => (await notifications(p, 'parley'))[0], 'the fallback notification');
  assert.equal(shown.title, 'Parley');
  assert.equal(shown.body, 'New message');
  assert.equal(shown.data.chatId, null);

  // the click: the worker's notificationclick handler (a synthetic event cannot
  // waitUntil, so the handler itself is called with the real notification)
  const sw = await workerOf(ann.context);
  const result = await sw.evaluate(async (tag) => {
    const [n] = await self.registration.getNotifications({ tag });
    return self.parley.onClick(n, '');
  }, `chat-${chatId}`);
  assert.equal(result.url, `/chat/${chatId}`);
  await p.waitForURL((u) => u.pathname === `/chat/${chatId}`);
  await p.locator('.chat-title', { hasText: 'bob' }).waitFor();
  assert.equal((await notifications(p, `chat-${chatId}`)).length, 0, 'the clicked notification is closed');
  // where the click leads, for each kind
  const targets = await sw.evaluate(() => [
    self.parley.targetOf({ type: 'message', chatId: 7 }, ''),
    self.parley.targetOf({ type: 'call', chatId: 7, callId: 'c-1' }, 'answer'),
    self.parley.targetOf({ type: 'call', chatId: 7, callId: 'c-1' }, 'decline'),
    self.parley.targetOf({ type: 'call', chatId: 7, callId: '../x?y' }, 'decline'),
    self.parley.targetOf({}, ''),
  ]);
  assert.deepEqual(targets, ['/chat/7', '/chat/7?call=c-1&action=answer', '/chat/7?call=c-1&action=decline', '/chat/7', '/']);
});

test('a call push has Answer and Decline; Decline opens the app, which declines the call', async () => {
  const p = ann.page;
  const callId = '3f1c2a9e-1111-4222-8333-444455556666';
  await deliverPush(p, { type: 'call', chatId, callId, title: 'bob', body: 'Incoming call' });
  const shown = await waitFor(async () => (await notifications(p, `call-${callId}`))[0], 'the call notification');
  assert.deepEqual(shown.actions, ['answer', 'decline']);
  assert.equal(shown.requireInteraction, true);
  assert.equal(shown.body, 'Incoming call');
  const sent = annFrames.length;
  const sw = await workerOf(ann.context);
  await sw.evaluate(async (tag) => {
    const [n] = await self.registration.getNotifications({ tag });
    return self.parley.onClick(n, 'decline');
  }, `call-${callId}`);
  await waitFor(() => annFrames.slice(sent).some((f) => f.event === 'call:reject' && f.data?.callId === callId), 'call:reject sent');
  // the query is dropped from the address once handled
  await p.waitForURL((u) => u.pathname === `/chat/${chatId}` && !u.search);
});

test('while hidden: "(N) Parley", a favicon badge, and client:state to the server', async () => {
  const p = ann.page;
  const errorsBefore = annErrors.length;
  // in the chat itself: hidden, its new messages are unread until ann looks again
  await p.goto(`/chat/${chatId}`);
  await p.locator('.me-status.ok').waitFor({ timeout: 15000 });
  await waitFor(() => annFrames.some((f) => f.event === 'client:state' && f.data?.visible === true), 'client:state visible on connect');
  const sent = annFrames.length;
  await p.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await waitFor(() => annFrames.slice(sent).some((f) => f.event === 'client:state' && f.data?.visible === false), 'client:state hidden');
  await send(bob.page, 'are you there?');
  await send(bob.page, 'hello?');
  await p.waitForFunction(() => document.title === '(2) Parley', null, { timeout: 10000 });
  const icon = await p.evaluate(() => document.querySelector('link[rel="icon"]').href);
  assert.match(icon, /^data:image\/svg\+xml,/);
  assert.match(decodeURIComponent(icon), />2<\/text>/);
  const sent2 = annFrames.length;
  await p.evaluate(() => {
    delete document.visibilityState;
    delete document.hidden;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await waitFor(() => annFrames.slice(sent2).some((f) => f.event === 'client:state' && f.data?.visible === true), 'client:state visible again');
  // visible again: read, so the title is the chat's without a count
  await p.waitForFunction(() => document.title === 'bob · Parley', null, { timeout: 5000 });
  // the server took every client:state (no error frame came back)
  assert.deepEqual(annErrors.slice(errorsBefore), []);
  assert.match(await p.evaluate(() => document.querySelector('link[rel="icon"]').href), /\/favicon\.svg$/);
});

test('the Notifications switch: permission denied', async () => {
  const d = await person(browser, server, { name: 'ann-denied' });
  try {
    await d.page.goto('/login');
    await d.page.evaluate((t) => localStorage.setItem('parley:token', t), await ann.page.evaluate(() => localStorage.getItem('parley:token')));
    const cdp = await d.context.newCDPSession(d.page);
    await cdp.send('Browser.setPermission', { permission: { name: 'notifications' }, setting: 'denied', origin: server.url });
    await d.page.goto('/settings');
    const sw = d.page.getByRole('switch', { name: 'Notifications' });
    await sw.waitFor();
    assert.equal(await sw.getAttribute('aria-checked'), 'false');
    await d.page.locator('#push-note', { hasText: 'blocked' }).waitFor();
    await sw.click();
    await d.page.locator('.settings-section .form-error:not([hidden])', { hasText: 'blocked' }).waitFor();
    assert.equal(await sw.getAttribute('aria-checked'), 'false');
    assert.deepEqual(cspErrors(d.page), []);
  } finally {
    await d.context.close();
  }
});

test('the Notifications switch: a browser without Web Push', async () => {
  const d = await person(browser, server, { name: 'ann-unsupported' });
  try {
    await d.context.addInitScript(() => {
      delete window.PushManager;
    });
    await d.page.goto('/login');
    await d.page.evaluate((t) => localStorage.setItem('parley:token', t), await ann.page.evaluate(() => localStorage.getItem('parley:token')));
    await d.page.goto('/settings');
    const sw = d.page.getByRole('switch', { name: 'Notifications' });
    await d.page.locator('#push-note', { hasText: 'does not support' }).waitFor();
    assert.ok(await sw.isDisabled());
  } finally {
    await d.context.close();
  }
});

test('the Notifications switch: permission granted, but no push service here', async () => {
  const p = ann.page;
  await ann.context.grantPermissions(['notifications'], { origin: server.url });
  await p.goto('/settings');
  await controlled(p);
  const sw = p.getByRole('switch', { name: 'Notifications' });
  await p.locator('#push-note', { hasText: 'Off for this device' }).waitFor();
  const posts = [];
  p.on('request', (r) => {
    if (r.url().includes('/api/push/')) posts.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  await sw.click();
  // without a key the server says so; with one, headless chromium cannot reach a push
  // service: either way a clear message and the switch stays off
  const err = p.locator('.settings-section .form-error:not([hidden])');
  await err.waitFor({ timeout: 20000 });
  assert.match(await err.innerText(), /does not send notifications|could not register with its push service/);
  assert.equal(await sw.getAttribute('aria-checked'), 'false');
  assert.ok(posts.includes('GET /api/push/vapid-public-key'), posts.join());
  assert.ok(!posts.includes('POST /api/push/subscriptions'), 'nothing registered');
  // the page stays usable at phone width
  await p.setViewportSize({ width: 375, height: 740 });
  const box = await sw.boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 375, JSON.stringify(box));
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `horizontal overflow ${overflow}px`);
  await p.setViewportSize({ width: 1200, height: 800 });
});

test('the Notifications switch on and off, and sign-out, with a stand-in push service', async () => {
  // headless chromium has no push service: the browser's PushManager is replaced by
  // one that hands out a fixed subscription, and the server's push routes are
  // answered here, so what the client sends is what is checked
  const d = await person(browser, server, { name: 'ann-push' });
  try {
    await d.context.grantPermissions(['notifications'], { origin: server.url });
    await d.context.addInitScript(() => {
      let sub = null;
      window.__subscribeOptions = null;
      PushManager.prototype.getSubscription = async function getSubscription() {
        return sub;
      };
      PushManager.prototype.subscribe = async function subscribe(options) {
        window.__subscribeOptions = { userVisibleOnly: options.userVisibleOnly, key: Array.from(new Uint8Array(options.applicationServerKey)) };
        sub = {
          endpoint: 'https://push.example.net/send/abc123',
          options: { applicationServerKey: new Uint8Array(options.applicationServerKey).buffer },
          toJSON() {
            return { endpoint: this.endpoint, keys: { p256dh: 'BPk', auth: 'QUJD' } };
          },
          async unsubscribe() {
            sub = null;
            return true;
          },
        };
        return sub;
      };
    });
    const KEY = 'BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U';
    const calls = [];
    await d.context.route('**/api/push/**', async (route) => {
      const req = route.request();
      const path = new URL(req.url()).pathname;
      calls.push({ method: req.method(), path, body: req.postDataJSON?.() ?? null, auth: !!req.headers().authorization });
      if (path === '/api/push/vapid-public-key') return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ publicKey: KEY }) });
      if (req.method() === 'POST') return route.fulfill({ status: 201, contentType: 'application/json', body: '{}' });
      return route.fulfill({ status: 204 });
    });
    await d.page.goto('/login');
    await d.page.getByLabel('Email or username').fill(ANN.username);
    await d.page.getByLabel('Password').fill(ANN.password);
    await d.page.getByRole('button', { name: 'Sign in' }).click();
    await d.page.locator('.me-status.ok').waitFor({ timeout: 15000 });
    await d.page.goto('/settings');
    await controlled(d.page);
    const sw = d.page.getByRole('switch', { name: 'Notifications' });
    await d.page.locator('#push-note', { hasText: 'Off for this device' }).waitFor();
    await sw.click();
    await d.page.locator('#push-note', { hasText: 'On for this device' }).waitFor();
    assert.equal(await sw.getAttribute('aria-checked'), 'true');
    const opts = await d.page.evaluate(() => window.__subscribeOptions);
    assert.equal(opts.userVisibleOnly, true);
    assert.equal(opts.key.length, 65, 'the VAPID key as the raw P-256 point');
    assert.equal(opts.key[0], 4);
    const post = calls.find((c) => c.method === 'POST');
    assert.deepEqual(post.body, { endpoint: 'https://push.example.net/send/abc123', keys: { p256dh: 'BPk', auth: 'QUJD' } });
    assert.ok(post.auth, 'with the session token');
    // off: the server forgets it
    await sw.click();
    await d.page.locator('#push-note', { hasText: 'Off for this device' }).waitFor();
    assert.deepEqual(calls.filter((c) => c.method === 'DELETE').map((c) => c.body), [{ endpoint: 'https://push.example.net/send/abc123' }]);
    // on again, then signing out removes it too (before the token goes)
    await sw.click();
    await d.page.locator('#push-note', { hasText: 'On for this device' }).waitFor();
    await d.page.getByRole('button', { name: 'Account menu' }).click();
    await d.page.getByRole('menuitem', { name: /Sign out/ }).click();
    await d.page.waitForURL((u) => u.pathname === '/login');
    const deletes = calls.filter((c) => c.method === 'DELETE');
    assert.equal(deletes.length, 2);
    assert.ok(deletes[1].auth);
    assert.equal(await d.page.evaluate(() => PushManager.prototype.getSubscription()), null, 'unsubscribed in the browser');
  } finally {
    await d.context.close();
  }
});

test('mute notifications in the chat details: a round trip to the server, shown in the list', async () => {
  const p = ann.page;
  await p.goto(`/chat/${chatId}`);
  await p.locator('.me-status.ok').waitFor({ timeout: 15000 });
  await p.getByRole('button', { name: /details|info/i }).first().click();
  const mute = p.getByRole('switch', { name: 'Mute notifications' });
  await mute.waitFor();
  assert.equal(await mute.getAttribute('aria-checked'), 'false');
  await mute.click();
  await p.waitForFunction(() => document.querySelector('.mute-switch')?.getAttribute('aria-checked') === 'true');
  await p.locator(`.chat-item[data-chat-id="${chatId}"] .muted-mark`).waitFor();
  // the server has it: a fresh load shows the chat muted
  const chat = await p.evaluate(async (id) => {
    const res = await fetch(`/api/chats/${id}`, { headers: { Authorization: `Bearer ${localStorage.getItem('parley:token')}` } });
    return res.json();
  }, chatId);
  assert.equal(chat.muted, true);
  await p.keyboard.press('Escape');
  await p.reload();
  await p.locator(`.chat-item[data-chat-id="${chatId}"] .muted-mark`).waitFor({ timeout: 15000 });
  await p.getByRole('button', { name: /details|info/i }).first().click();
  await mute.waitFor();
  assert.equal(await mute.getAttribute('aria-checked'), 'true');
  await mute.click();
  await p.waitForFunction(() => document.querySelector('.mute-switch')?.getAttribute('aria-checked') === 'false');
  assert.equal(await p.locator(`.chat-item[data-chat-id="${chatId}"] .muted-mark`).count(), 0);
  await p.keyboard.press('Escape');
});

test('axe: the settings with the Notifications switch, the details with the mute switch, the offline notice', async () => {
  const p = ann.page;
  const check = async (what) => {
    for (const scheme of ['light', 'dark']) {
      await p.emulateMedia({ colorScheme: scheme });
      await sleep(400);
      if (!(await p.evaluate(() => !!window.axe))) await p.evaluate(AXE_SOURCE);
      const res = await p.evaluate(() => window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }, resultTypes: ['violations'] }));
      const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [], `${what} (${scheme})`);
    }
    await p.emulateMedia({ colorScheme: 'light' });
  };
  await p.goto('/settings');
  await p.getByRole('switch', { name: 'Notifications' }).waitFor();
  await check('settings');
  await p.goto(`/chat/${chatId}`);
  await p.locator('.me-status.ok').waitFor({ timeout: 15000 });
  await p.getByRole('button', { name: /details|info/i }).first().click();
  await p.getByRole('switch', { name: 'Mute notifications' }).waitFor();
  await check('chat details');
  await p.keyboard.press('Escape');
  await ann.context.setOffline(true);
  try {
    await p.reload();
    await p.getByRole('heading', { name: 'You are offline' }).waitFor({ timeout: 15000 });
    await check('offline');
  } finally {
    await ann.context.setOffline(false);
  }
  await p.locator('.me-status.ok').waitFor({ timeout: 20000 });
  assert.deepEqual(cspErrors(ann.page, bob.page), []);
});
