// Web Push end to end: the web client subscribes (its PushManager hands out a
// subscription of the loopback push service in lib/pushservice.js, since headless
// chromium has no push service of its own), Parley sends a message's push to it
// (VAPID-signed, RFC 8291-encrypted; the stand-in checks and decrypts it), and that
// payload, delivered to the page's service worker, shows the notification whose
// click opens the chat. A visible tab gets no push; a muted chat gets none.
// Skipped when the server has no push routes (a build without them).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH } from 'node:crypto';
import { Parley, launchBrowser, person, register, sleep, cspErrors } from '../lib/harness.js';
import { PushService } from '../lib/pushservice.js';

const ANN = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const BOB = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };

let server;
let browser;
let pushsvc;
let ann;
let bob;
let chatId;

function vapidKey() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return ecdh.getPrivateKey().toString('base64url');
}

before(async () => {
  pushsvc = await new PushService().start();
  const withPush = new Parley('push-e2e', {
    env: {
      PARLEY__PUSH__VAPID_PRIVATE_KEY: vapidKey(),
      PARLEY__PUSH__SUBJECT: 'mailto:admin@example.com',
      PARLEY__PUSH__ALLOW_INSECURE_ENDPOINTS: 'true',
    },
  });
  server = await withPush.start();
  assert.equal((await fetch(`${server.url}/api/push/vapid-public-key`)).status, 200, 'the server hands out its VAPID key');
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  bob = await person(browser, server, { name: 'bob' });
  // ann's browser: a PushManager with the stand-in's subscription
  const sub = pushsvc.subscribe();
  await ann.context.grantPermissions(['notifications'], { origin: server.url });
  await ann.context.addInitScript((json) => {
    let current = null;
    PushManager.prototype.getSubscription = async function getSubscription() {
      return current;
    };
    PushManager.prototype.subscribe = async function subscribe(options) {
      current = {
        endpoint: json.endpoint,
        options: { applicationServerKey: new Uint8Array(options.applicationServerKey).buffer },
        toJSON: () => json,
        unsubscribe: async () => {
          current = null;
          return true;
        },
      };
      return current;
    };
  }, sub);
  await register(ann.page, ANN);
  await register(bob.page, BOB);
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
  await pushsvc?.stop();
});

async function send(page, text) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    if (h) {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    } else {
      delete document.visibilityState;
      delete document.hidden;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await sleep(300); // the client:state frame reaches the server
}

async function deliverPush(page, payload) {
  const cdp = await page.context().newCDPSession(page);
  const regs = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
    for (const r of registrations) if (!r.isDeleted) regs.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  for (let i = 0; i < 50 && !regs.has(`${server.url}/`); i++) await sleep(100);
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: regs.get(`${server.url}/`), data: JSON.stringify(payload) });
  await cdp.detach();
}

const isMessage = (text) => (e) => e.payload?.type === 'message' && e.payload.body === text;

test('notifications on: a hidden tab gets the push, the worker shows it, its click opens the chat', async () => {
  const p = ann.page;
  await p.goto('/settings');
  await p.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  const sw = p.getByRole('switch', { name: 'Notifications' });
  await sw.click();
  await p.locator('#push-note', { hasText: 'On for this device' }).waitFor({ timeout: 10000 });
  assert.equal(server.query('SELECT COUNT(*) FROM push_subscriptions')[0][0], '1');

  await setHidden(p, true);
  const sentAt = Date.now();
  await send(bob.page, 'Lunch at noon?');
  const push = await pushsvc.next(isMessage('Lunch at noon?'), 2000);
  assert.ok(Date.now() - sentAt < 2000, 'within 2 s');
  assert.equal(push.error, null);
  assert.equal(push.payload.chatId, chatId);
  assert.equal(push.payload.title, 'bob');
  assert.equal(push.headers.urgency, 'high');
  assert.ok(Number(push.headers.ttl) > 0);
  assert.ok(push.headers.topic, 'a Topic per chat');

  // what the service worker does with exactly that payload
  await deliverPush(p, push.payload);
  const shown = await p.evaluate(async (tag) => {
    for (let i = 0; i < 50; i++) {
      const [n] = await (await navigator.serviceWorker.ready).getNotifications({ tag });
      if (n) return { title: n.title, body: n.body };
      await new Promise((r) => setTimeout(r, 100));
    }
    return null;
  }, `chat-${chatId}`);
  assert.deepEqual(shown, { title: 'bob', body: 'Lunch at noon?' });
  await setHidden(p, false);
  const worker = ann.context.serviceWorkers().find((w) => w.url().endsWith('/sw.js'));
  await worker.evaluate(async (tag) => {
    const [n] = await self.registration.getNotifications({ tag });
    return self.parley.onClick(n, '');
  }, `chat-${chatId}`);
  await p.waitForURL((u) => u.pathname === `/chat/${chatId}`);
  await p.locator('.msg-row.theirs', { hasText: 'Lunch at noon?' }).waitFor();
});

test('a visible tab gets no push', async () => {
  await ann.page.locator('.me-status.ok').waitFor();
  await send(bob.page, 'you are looking at this');
  await ann.page.locator('.msg-row.theirs', { hasText: 'you are looking at this' }).waitFor();
  await sleep(1500);
  assert.equal(pushsvc.received.filter(isMessage('you are looking at this')).length, 0);
});

test('a muted chat gets no push, unmuted it does again', async () => {
  const p = ann.page;
  await p.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  const mute = p.getByRole('switch', { name: 'Mute notifications' });
  await mute.click();
  await p.waitForFunction(() => document.querySelector('.mute-switch')?.getAttribute('aria-checked') === 'true');
  await p.keyboard.press('Escape');
  await setHidden(p, true);
  await send(bob.page, 'muted one');
  await sleep(1500);
  assert.equal(pushsvc.received.filter(isMessage('muted one')).length, 0);
  await setHidden(p, false);
  await p.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  await mute.click();
  await p.waitForFunction(() => document.querySelector('.mute-switch')?.getAttribute('aria-checked') === 'false');
  await p.keyboard.press('Escape');
  await setHidden(p, true);
  await send(bob.page, 'unmuted one');
  await pushsvc.next(isMessage('unmuted one'), 2000);
  await setHidden(p, false);
});

test('signing out removes the subscription on the server', async () => {
  const p = ann.page;
  await p.getByRole('button', { name: 'Account menu' }).click();
  await p.getByRole('menuitem', { name: /Sign out/ }).click();
  await p.waitForURL((u) => u.pathname === '/login');
  assert.equal(server.query('SELECT COUNT(*) FROM push_subscriptions')[0][0], '0');
  assert.deepEqual(cspErrors(ann.page, bob.page), []);
});
