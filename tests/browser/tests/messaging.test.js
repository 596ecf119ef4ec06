// Two people in two browser contexts: sign-up, search, live chat, receipts, typing,
// end-to-end encryption, voice messages, and a server crash in the middle of a chat.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, shot, sleep, cspErrors } from '../lib/harness.js';

const A = { email: 'alice@example.com', username: 'alice', password: 'correct horse battery' };
const B = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };

let server;
let browser;
let alice;
let bob;
let chatPath;

const rowsWithText = (page, text) => page.locator('.msg-row').filter({ has: page.locator('.text', { hasText: text }) });

async function send(page, text) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

before(async () => {
  server = await new Parley('messaging').start();
  browser = await launchBrowser();
  alice = await person(browser, server, { name: 'alice' });
  bob = await person(browser, server, { name: 'bob' });
});

after(async () => {
  const errors = [...(alice?.page.errors || []), ...(bob?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

test('sign-up lands on the chat list and the session survives a reload', async () => {
  await alice.page.goto('/login');
  await alice.page.getByRole('heading', { name: 'Welcome back' }).waitFor();
  await shot(alice.page, 'login');
  await register(alice.page, A);
  await register(bob.page, B);
  await alice.page.reload();
  await alice.page.locator('.me-name', { hasText: 'alice' }).waitFor();
  assert.equal(new URL(alice.page.url()).pathname, '/');
  // a bad token sends you back to the login screen
  const ctx = await browser.newContext({ baseURL: server.url });
  const p = await ctx.newPage();
  await p.goto('/login');
  await p.evaluate(() => localStorage.setItem('parley:token', 'not-a-valid-token'));
  await p.goto('/');
  await p.waitForURL((u) => u.pathname === '/login');
  await ctx.close();
});

test('people find each other by search and chat live both ways', async () => {
  const ap = alice.page;
  const bp = bob.page;
  await ap.getByLabel('Search people').fill('bo');
  await ap.locator('.person', { hasText: 'bob' }).click();
  await ap.waitForURL(/\/chat\/\d+$/);
  chatPath = new URL(ap.url()).pathname;
  await send(ap, 'Hi Bob 👋 how are you?');
  await rowsWithText(ap, 'Hi Bob 👋').first().waitFor();
  assert.ok(await ap.locator('.msg-row.own', { hasText: 'Hi Bob 👋' }).isVisible());

  // Bob's list shows the new chat with preview and an unread badge, live.
  const item = bp.locator('.chat-item', { hasText: 'alice' });
  await item.waitFor();
  await bp.locator('.chat-item .badge', { hasText: '1' }).waitFor();
  assert.match(await item.locator('.preview').innerText(), /Hi Bob/);
  assert.equal(await item.locator('.presence-dot.on').count(), 1, 'alice shows as online');
  await item.click();
  await bp.waitForURL(chatPath);
  await bp.locator('.msg-row.theirs', { hasText: 'Hi Bob 👋' }).waitFor();
  await send(bp, 'Great, thanks!\nAnd you?');
  await ap.locator('.msg-row.theirs', { hasText: 'Great, thanks!' }).waitFor();
  assert.equal(await ap.locator('.msg-row.theirs .text', { hasText: 'And you?' }).innerText(), 'Great, thanks!\nAnd you?');
  // Shift+Enter breaks the line instead of sending
  const box = ap.getByRole('textbox', { name: 'Message' });
  await box.fill('line one');
  await box.press('Shift+Enter');
  await box.type('line two');
  assert.equal(await box.inputValue(), 'line one\nline two');
  await box.press('Enter');
  await bp.locator('.msg-row.theirs .text', { hasText: 'line two' }).waitFor();
  assert.equal(await rowsWithText(bp, 'line two').count(), 1);
  // Bob has the chat open, so everything gets read
  await ap.waitForFunction(() => document.querySelector('.msg-row.own:last-child')?.dataset.status === 'read');
});

test('ticks go from sent to delivered to read', async () => {
  const ap = alice.page;
  const bp = bob.page;
  // Bob leaves the chat (chat list only): delivered but not read.
  await bp.goto('/');
  await bp.locator('.me-status.ok').waitFor();
  await send(ap, 'Ticks check');
  const row = ap.locator('.msg-row.own', { hasText: 'Ticks check' });
  await row.waitFor();
  await ap.waitForFunction(() => document.querySelector('.msg-row.own:last-child')?.dataset.status === 'delivered');
  await sleep(500);
  assert.equal(await row.getAttribute('data-status'), 'delivered');
  assert.equal(await row.locator('.ticks').getAttribute('aria-label'), 'Delivered');
  await bp.locator('.chat-item .badge', { hasText: '1' }).waitFor();
  await shot(bp, 'chat-list');
  await bp.locator('.chat-item', { hasText: 'alice' }).click();
  await ap.waitForFunction(() => document.querySelector('.msg-row.own:last-child')?.dataset.status === 'read');
  assert.equal(await row.locator('.ticks').getAttribute('aria-label'), 'Read');
  // every earlier own message is read as well
  const statuses = await ap.locator('.msg-row.own').evaluateAll((els) => els.map((e) => e.dataset.status));
  assert.ok(statuses.every((s) => s === 'read'), statuses.join(','));
  await bp.waitForFunction(() => !document.querySelector('.chat-item .badge'));
});

test('the typing indicator shows while the other side types', async () => {
  const ap = alice.page;
  const bp = bob.page;
  await bp.getByRole('textbox', { name: 'Message' }).type('I am typ', { delay: 40 });
  const indicator = ap.locator('.typing-line.show');
  await indicator.waitFor({ timeout: 5000 });
  assert.match(await indicator.innerText(), /bob is typing/);
  assert.match(await ap.locator('#chat-sub').innerText(), /typing/);
  await bp.getByRole('textbox', { name: 'Message' }).fill('');
  await ap.locator('.typing-line.show').waitFor({ state: 'detached', timeout: 8000 }).catch(() => {});
  await ap.waitForFunction(() => !document.querySelector('.typing-line.show'), null, { timeout: 8000 });
});

test('an encrypted message is read by the peer and the server stores no plaintext', async () => {
  const ap = alice.page;
  const bp = bob.page;
  const secret = 'The eagle lands at 06:00 🦅';
  const lock = ap.getByRole('switch', { name: 'End-to-end encryption' });
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'true');
  await send(ap, secret);
  const own = ap.locator('.msg-row.own', { has: ap.locator('.bubble.encrypted') }).last();
  await own.locator('.text', { hasText: secret }).waitFor();
  await ap.waitForFunction(() => document.querySelector('.msg-row.own:last-child')?.dataset.id);
  const theirs = bp.locator('.msg-row.theirs', { has: bp.locator('.bubble.encrypted') }).last();
  await theirs.locator('.text', { hasText: secret }).waitFor();
  // the lock persists across reloads
  await ap.reload();
  await ap.getByRole('switch', { name: 'End-to-end encryption', checked: true }).waitFor();
  await ap.locator('.msg-row.own .text', { hasText: secret }).waitFor();

  const rows = server.query('SELECT id, content, e2ee, encrypted FROM messages ORDER BY id');
  const enc = rows.filter((r) => r[3] === '1');
  assert.equal(enc.length, 1, 'one encrypted row');
  for (const [, content, e2ee] of rows) {
    assert.ok(!content.includes('eagle') && !String(e2ee).includes('eagle'), 'no plaintext in the database');
  }
  assert.equal(enc[0][1], '', 'content is empty');
  const env = JSON.parse(enc[0][2]);
  assert.equal(env.v, 1);
  assert.equal(env.alg, 'RSA-OAEP-256+A256GCM');
  assert.equal(Buffer.from(env.iv, 'base64').length, 12);
  const ids = server.query("SELECT id FROM users WHERE username IN ('alice','bob') ORDER BY id").map((r) => r[0]);
  assert.deepEqual(Object.keys(env.keys).sort(), ids.sort());

  // fingerprints: Bob's key as Alice sees it equals the fingerprint Bob's browser computed
  const bobFp = await bp.evaluate(async () => (await import('/js/e2ee.js')).myFingerprint());
  assert.match(bobFp, /^[0-9a-f]{64}$/);
  await ap.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  await ap.waitForFunction((f) => [...document.querySelectorAll('.fingerprint')].some((e) => e.dataset.fingerprint === f), bobFp);
  assert.equal(await ap.locator(`.fingerprint[data-fingerprint="${bobFp}"]`).count(), 1);
  await ap.keyboard.press('Escape');

  // A new browser for Bob cannot read the old message and says so; Alice is warned of the new key.
  const ctx = await browser.newContext({ baseURL: server.url });
  const p2 = await ctx.newPage();
  await p2.goto('/login');
  await p2.getByLabel('Email or username').fill('bob');
  await p2.getByLabel('Password').fill(B.password);
  await p2.getByRole('button', { name: 'Sign in' }).click();
  await p2.waitForURL((u) => u.pathname === '/');
  await p2.goto(chatPath);
  await p2.locator('.text.undecryptable', { hasText: 'Cannot decrypt this message on this device' }).waitFor();
  await ap.locator('.banner.key-changed', { hasText: "bob's security key has changed" }).waitFor({ timeout: 10000 });
  await shot(ap, 'key-changed');
  await ctx.close();
  // Bob's first browser puts its own key back; Alice turns encryption off again.
  await bp.reload();
  await bp.locator('.me-status.ok').waitFor();
  await ap.locator('.banner.key-changed .btn', { hasText: 'Dismiss' }).click();
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'false');
});

test('a voice message is recorded, arrives and plays', async () => {
  const ap = alice.page;
  const bp = bob.page;
  await bp.goto(chatPath);
  await bp.locator('.me-status.ok').waitFor();
  const mic = ap.getByRole('button', { name: /Record voice message/ });
  const box = await mic.boundingBox();
  await ap.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await ap.mouse.down();
  await ap.locator('.recorder:not([hidden])').waitFor();
  await sleep(2500);
  assert.match(await ap.locator('.rec-time').innerText(), /0:0[1-4]/);
  await shot(ap, 'recording');
  await ap.mouse.up();
  await ap.locator('.msg-row.own .voice').last().waitFor();
  const uploadError = ap.locator('.send-error:not([hidden])');
  await Promise.race([
    ap.waitForFunction(() => [...document.querySelectorAll('.msg-row.own')].pop()?.dataset.id, null, { timeout: 15000 }),
    uploadError.waitFor({ timeout: 15000 }).then(async () => {
      throw new Error(`upload failed: ${await uploadError.innerText()}`);
    }),
  ]);
  const voice = bp.locator('.msg-row.theirs .voice').last();
  await voice.waitFor({ timeout: 10000 });
  await voice.getByRole('button', { name: 'Play voice message' }).click();
  await bp.waitForFunction(() => {
    const v = [...document.querySelectorAll('.msg-row.theirs .voice')].pop();
    return v?.media && v.media.currentTime > 0.2;
  }, null, { timeout: 10000 });
  const info = await voice.evaluate((v) => ({ duration: v.media.duration, shown: Number(v.dataset.durationMs), src: v.media.src }));
  assert.ok(info.src.startsWith('blob:'), info.src);
  assert.ok(info.shown > 0, `shown duration ${info.shown}`);
  assert.ok(Number.isFinite(info.duration) ? info.duration > 0 : info.shown > 0, JSON.stringify(info));
  assert.ok(info.shown > 1000 && info.shown < 6000, `about 2.5 s, got ${info.shown}`);
});

test('after Parley is killed and restarted, messages from both sides arrive once', async () => {
  const ap = alice.page;
  const bp = bob.page;
  await send(ap, 'Before the crash');
  await bp.locator('.msg-row.theirs .text', { hasText: 'Before the crash' }).waitFor();
  await shot(ap, 'chat');

  await server.kill();
  await ap.locator('.conn-banner', { hasText: 'Reconnecting' }).waitFor({ timeout: 10000 });
  await bp.locator('.conn-banner', { hasText: 'Reconnecting' }).waitFor({ timeout: 10000 });
  await shot(ap, 'reconnecting');
  // typed while offline: shown as pending, sent after the reconnect
  await send(ap, 'Written while offline');
  const queued = ap.locator('.msg-row.own', { hasText: 'Written while offline' });
  await queued.waitFor();
  assert.equal(await queued.getAttribute('data-status'), 'pending');

  await server.start();
  await bp.locator('.me-status.ok').waitFor({ timeout: 30000 });
  await send(bp, 'Sent after the restart');
  await ap.locator('.msg-row.theirs .text', { hasText: 'Sent after the restart' }).waitFor({ timeout: 30000 });
  await bp.locator('.msg-row.theirs .text', { hasText: 'Written while offline' }).waitFor({ timeout: 30000 });
  await ap.waitForFunction(() => !document.querySelector('.msg-row[data-status="pending"]'), null, { timeout: 15000 });
  await sleep(1500);
  for (const [page, text] of [[ap, 'Sent after the restart'], [bp, 'Written while offline'], [ap, 'Written while offline'], [bp, 'Before the crash']]) {
    assert.equal(await rowsWithText(page, text).count(), 1, `"${text}" shows once`);
  }
  assert.equal(server.query("SELECT COUNT(*) FROM messages WHERE content = 'Written while offline'")[0][0], '1');
  await ap.waitForFunction(() => document.querySelector('.conn-banner')?.hidden);
  // and after a reload, history has each message once
  await ap.reload();
  await rowsWithText(ap, 'Sent after the restart').waitFor();
  assert.equal(await rowsWithText(ap, 'Sent after the restart').count(), 1);
  assert.equal(await rowsWithText(ap, 'Written while offline').count(), 1);
});

test('history scrolls back with keyset paging', async () => {
  const ap = alice.page;
  // 130 messages straight through the WebSocket, then a fresh load of the chat
  await ap.evaluate(async (path) => {
    const chatId = Number(path.split('/').pop());
    for (let i = 1; i <= 130; i++) {
      // eslint-disable-next-line no-await-in-loop
      await window.parley.socket.request('message:send', { chatId, clientId: crypto.randomUUID(), kind: 'text', content: `bulk ${i}` });
    }
  }, chatPath);
  await ap.reload();
  await rowsWithText(ap, 'bulk 130').waitFor();
  assert.equal(await rowsWithText(ap, 'bulk 1').filter({ hasText: /^bulk 1$/ }).count(), 0, 'not loaded yet');
  for (let i = 0; i < 20 && !(await ap.locator('.msg-row .text', { hasText: /^bulk 1$/ }).count()); i++) {
    await ap.locator('.messages').evaluate((el) => {
      el.scrollTop = 0;
    });
    await sleep(300);
  }
  assert.equal(await ap.locator('.msg-row .text', { hasText: /^bulk 1$/ }).count(), 1);
  const keys = await ap.locator('.msg-row').evaluateAll((els) => els.map((e) => e.dataset.key));
  assert.equal(new Set(keys).size, keys.length, 'no duplicates');
  const ids = await ap.locator('.msg-row').evaluateAll((els) => els.map((e) => Number(e.dataset.id)));
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in order');
  await ap.locator('.history-note', { hasText: 'beginning of the conversation' }).waitFor();
});

test('a new group with a title and members shows up for its members', async () => {
  const ap = alice.page;
  const bp = bob.page;
  await ap.getByRole('button', { name: 'New group' }).click();
  const dialog = ap.getByRole('dialog', { name: 'New group' });
  await dialog.getByLabel('Group name').fill('Book club');
  await dialog.getByLabel('Add people').fill('bob');
  await dialog.getByLabel('bob').check();
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await ap.waitForURL(/\/chat\/\d+$/);
  await ap.locator('.chat-title', { hasText: 'Book club' }).waitFor();
  await send(ap, 'Welcome to the book club 📚');
  await bp.locator('.chat-item', { hasText: 'Book club' }).waitFor();
  await bp.locator('.chat-item', { hasText: 'Book club' }).click();
  await bp.locator('.msg-row.theirs .sender', { hasText: 'alice' }).waitFor();
  assert.match(await bp.locator('#chat-sub').innerText(), /2 members/);
});

test('narrow screens show the list and the chat as separate screens', async () => {
  const { context, page } = await person(browser, server, { width: 375, height: 740, name: 'bob-mobile' });
  await page.goto('/login');
  await page.getByLabel('Email or username').fill('bob@example.com');
  await page.getByLabel('Password').fill(B.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  const item = page.locator('.chat-item').filter({ has: page.locator('.chat-name', { hasText: /^alice$/ }) });
  await item.waitFor();
  assert.ok(!(await page.locator('.pane').isVisible()), 'no chat pane on the list screen');
  await shot(page, 'mobile-chat-list');
  await item.click();
  await page.locator('.msg-row').first().waitFor();
  assert.ok(!(await page.locator('.sidebar').isVisible()), 'no list on the chat screen');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal overflow (${overflow})`);
  await shot(page, 'mobile-chat');
  await page.getByRole('link', { name: 'Back to chats' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  assert.ok(await page.locator('.sidebar').isVisible());
  await context.close();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(alice.page, bob.page), []);
  const uncaught = [...alice.page.errors, ...bob.page.errors].filter((e) => !e.includes(' console: '));
  assert.deepEqual(uncaught, [], 'no uncaught exceptions in the pages');
});
