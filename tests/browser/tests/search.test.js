// Searching a chat's messages and jumping to a hit: only this chat's messages are
// found, an old hit loads the page around it (highlighted and focused), scrolling
// down from there loads newer pages until the present, Escape closes the search,
// and everything works at 375 px with the keyboard alone.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, shot, sleep, cspErrors } from '../lib/harness.js';

const A = { email: 'amy@example.com', username: 'amy', password: 'correct horse battery' };
const B = { email: 'ben@example.com', username: 'ben', password: 'battery staple horse' };
const C = { email: 'cyd@example.com', username: 'cyd', password: 'staple horse battery' };
const FILLER = 140; // more than two pages of history (50 a page) after the old hit
const WOMBATS = 24; // more than one page of search hits (20 a page)

let server;
let browser;
let amy;
let ben;
let cyd;
let chatId; // amy and ben
let otherChatId; // amy and cyd
let oldHitId;
let foreignId; // a message of amy and cyd's chat

before(async () => {
  server = await new Parley('search').start();
  browser = await launchBrowser();
  amy = await person(browser, server, { name: 'amy' });
  ben = await person(browser, server, { name: 'ben' });
  cyd = await person(browser, server, { name: 'cyd' });
  await register(amy.page, A);
  await register(ben.page, B);
  await register(cyd.page, C);
  const benId = idOf('ben');
  const cydId = idOf('cyd');
  // The history goes through the WebSocket like any message (the server indexes it).
  ({ chatId, otherChatId, oldHitId, foreignId } = await amy.page.evaluate(async ({ benId, cydId, FILLER, WOMBATS }) => {
    const app = window.parley;
    const send = (chatId, content) => app.socket.request('message:send', { chatId, clientId: crypto.randomUUID(), kind: 'text', content });
    const chat = await app.openDirect(benId);
    const other = await app.openDirect(cydId);
    const old = await send(chat.id, 'The Quokka archive starts here, long ago');
    for (let i = 1; i <= FILLER; i++) {
      // eslint-disable-next-line no-await-in-loop
      await send(chat.id, `filler ${i}`);
      // eslint-disable-next-line no-await-in-loop
      if (i <= WOMBATS) await send(chat.id, `wombat number ${i}`);
    }
    await send(chat.id, 'A recent quokka sighting, near the café');
    const foreign = await send(other.id, 'quokka talk in another chat');
    return { chatId: chat.id, otherChatId: other.id, oldHitId: old.id, foreignId: foreign.id };
  }, { benId, cydId, FILLER, WOMBATS }));
});

after(async () => {
  const errors = [amy, ben, cyd].flatMap((p) => p?.page.errors || []);
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

function idOf(name) {
  return Number(server.query(`SELECT id FROM users WHERE username = '${name}'`)[0][0]);
}

const hits = (page) => page.locator('.msg-search-hits .hit');

async function openChat(page, id) {
  await page.goto(`/chat/${id}`);
  await page.locator('.msg-row').first().waitFor();
}

/** Opens the search if it is closed and searches for `text` (the hits of the same query stay). */
async function searchFor(page, text) {
  const box = page.getByRole('searchbox', { name: 'Search messages in this chat' });
  if (!(await box.isVisible())) await page.getByRole('button', { name: 'Search messages' }).click();
  if ((await box.inputValue()) === text && (await hits(page).count())) return;
  const answered = page.waitForResponse((r) => r.url().includes('/api/messages/search?') && new URL(r.url()).searchParams.get('query') === text);
  await box.fill(text);
  await answered;
  await page.waitForFunction(() => /found|No messages match/.test(document.querySelector('.msg-search-status')?.textContent || ''));
}

test('search lists the hits of this chat only, newest first, with the words marked', async () => {
  const ap = amy.page;
  await openChat(ap, chatId);
  const button = ap.getByRole('button', { name: 'Search messages' });
  await button.click();
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  const box = ap.getByRole('searchbox', { name: 'Search messages in this chat' });
  assert.ok(await box.evaluate((el) => el === document.activeElement), 'the search box has the focus');

  // One letter asks nothing of the server.
  let asked = 0;
  const count = (req) => {
    if (req.url().includes('/api/messages/search')) asked += 1;
  };
  ap.on('request', count);
  await box.fill('q');
  await ap.locator('.msg-search-status', { hasText: 'at least 2' }).waitFor();
  await sleep(500);
  assert.equal(asked, 0, 'no request for a one-letter query');
  ap.off('request', count);

  await searchFor(ap, 'QUOK');
  const texts = await hits(ap).locator('.hit-text').allInnerTexts();
  assert.deepEqual(texts, ['A recent quokka sighting, near the café', 'The Quokka archive starts here, long ago'], 'newest first, this chat only');
  assert.deepEqual(await hits(ap).locator('mark').allInnerTexts(), ['quok', 'Quok'], 'the matched prefix is marked');
  assert.equal(await hits(ap).first().locator('.hit-sender').innerText(), 'You');
  assert.equal(await ap.locator('.msg-search-hits', { hasText: 'another chat' }).count(), 0);

  // Accents do not matter either way.
  await searchFor(ap, 'cafe');
  assert.deepEqual(await hits(ap).locator('mark').allInnerTexts(), ['café']);

  // Someone else's chat: its id in the query is refused, and jumping to its message shows nothing.
  const other = await ap.evaluate(async (id) => {
    const r = await fetch(`/api/messages/search?query=quokka&chatId=${id}`, { headers: { Authorization: `Bearer ${window.parley.token}` } });
    return r.status;
  }, otherChatId + 1000);
  assert.equal(other, 403);
  const shown = await ap.evaluate(async ({ chatId, foreignId }) => (await import('/js/views/jump.js')).jumpToMessage(chatId, foreignId), { chatId, foreignId });
  assert.equal(shown, false, 'a message of another chat is not shown here');
  assert.equal(await ap.locator('.msg-row', { hasText: 'another chat' }).count(), 0);
  // and ben, who is not in amy and cyd's chat, finds nothing of it
  const benFound = await ben.page.evaluate(async (id) => {
    const r = await fetch(`/api/messages/search?query=quokka&chatId=${id}`, { headers: { Authorization: `Bearer ${window.parley.token}` } });
    return r.status;
  }, otherChatId);
  assert.equal(benFound, 403);
});

test('Load more brings the next page of hits', async () => {
  const ap = amy.page;
  await searchFor(ap, 'wombat');
  assert.equal(await hits(ap).count(), 20);
  const more = ap.getByRole('button', { name: 'Load more' });
  await more.focus();
  await ap.keyboard.press('Enter');
  await ap.waitForFunction((n) => document.querySelectorAll('.msg-search-hits .hit').length === n, WOMBATS);
  const ids = await hits(ap).evaluateAll((els) => els.map((e) => Number(e.dataset.messageId)));
  assert.equal(new Set(ids).size, WOMBATS, 'no hit twice');
  assert.deepEqual(ids, [...ids].sort((x, y) => y - x), 'newest first across pages');
  assert.ok(await more.isHidden(), 'nothing more to load');
  assert.ok(await hits(ap).nth(20).evaluate((el) => el === document.activeElement), 'the focus moves to the first new hit');
});

test('jumping to an old hit loads the page around it, highlights it and focuses it', async () => {
  const ap = amy.page;
  await searchFor(ap, 'quokka archive');
  assert.equal(await hits(ap).count(), 1);
  assert.equal(await ap.locator('.msg-row', { hasText: 'Quokka archive' }).count(), 0, 'not loaded before the jump');
  await hits(ap).first().click();
  const target = ap.locator('.msg-row.jump-target', { hasText: 'Quokka archive' });
  await target.waitFor();
  assert.equal(Number(await target.getAttribute('data-id')), oldHitId);
  assert.ok(await ap.getByRole('search').isHidden(), 'the search panel closed');
  assert.ok(await target.evaluate((el) => el === document.activeElement), 'the message has the focus');
  const inView = await target.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const s = el.closest('.messages').getBoundingClientRect();
    return r.top >= s.top && r.bottom <= s.bottom;
  });
  assert.ok(inView, 'scrolled into view');
  assert.equal(await ap.locator('.msg-row', { hasText: 'A recent quokka sighting' }).count(), 0, 'the present is not shown under the window');
  assert.ok(await ap.getByRole('button', { name: 'Jump to latest messages' }).isVisible());
  await shot(ap, 'search-jump');
  await ap.waitForFunction(() => !document.querySelector('.jump-target'), null, { timeout: 5000 });
});

test('scrolling down from the window loads newer messages up to the present', async () => {
  const ap = amy.page;
  // A message ben sends meanwhile waits past the window: counted, not shown yet.
  await ben.page.evaluate((id) => window.parley.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'live while amy reads old history' }), chatId);
  await ap.locator('.jump-count', { hasText: '1' }).waitFor();
  assert.equal(await ap.locator('.msg-row', { hasText: 'live while amy reads' }).count(), 0);

  const requests = [];
  ap.on('request', (r) => {
    if (r.url().includes('after=')) requests.push(r.url());
  });
  for (let i = 0; i < 40 && !(await ap.locator('.msg-row', { hasText: 'live while amy reads' }).count()); i++) {
    await ap.locator('.messages').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await sleep(250);
  }
  assert.ok(requests.length >= 2, `newer pages were loaded (${requests.length})`);
  await ap.locator('.msg-row', { hasText: 'A recent quokka sighting' }).waitFor();
  await ap.locator('.msg-row', { hasText: 'live while amy reads' }).waitFor();
  const ids = await ap.locator('.msg-row').evaluateAll((els) => els.map((e) => Number(e.dataset.id)));
  assert.equal(new Set(ids).size, ids.length, 'no message twice');
  assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'in order');
  // Everything from the old hit to the present, without a gap.
  const expected = server.query(`SELECT id FROM messages WHERE chat_id = ${chatId} AND id >= ${ids[0]} ORDER BY id`).map((r) => Number(r[0]));
  assert.deepEqual(ids, expected, 'no gap between the window and the present');
  // Back at the present, new messages show as usual.
  await ben.page.evaluate((id) => window.parley.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'and one more' }), chatId);
  await ap.locator('.msg-row', { hasText: 'and one more' }).waitFor();
});

test('Jump to latest leaves the window, and sending from a window shows the present', async () => {
  const ap = amy.page;
  // a fresh load holds only the newest page again
  await openChat(ap, chatId);
  await searchFor(ap, 'quokka archive');
  await hits(ap).first().click();
  await ap.locator('.msg-row.jump-target').waitFor();
  await ap.getByRole('button', { name: 'Jump to latest messages' }).click();
  await ap.locator('.msg-row', { hasText: 'and one more' }).waitFor();
  assert.equal(await ap.locator('.msg-row', { hasText: 'Quokka archive' }).count(), 0, 'the old window is gone');

  await searchFor(ap, 'quokka archive');
  await hits(ap).first().click();
  await ap.locator('.msg-row.jump-target').waitFor();
  const box = ap.getByRole('textbox', { name: 'Message' });
  await box.fill('sent from the past');
  await box.press('Enter');
  await ap.locator('.msg-row.own', { hasText: 'sent from the past' }).waitFor();
  await ap.locator('.msg-row', { hasText: 'and one more' }).waitFor();
  assert.equal(await ap.locator('.msg-row', { hasText: 'Quokka archive' }).count(), 0);
});

test('Escape closes the search and gives the focus back to its button', async () => {
  const ap = amy.page;
  const button = ap.getByRole('button', { name: 'Search messages' });
  await button.click();
  const panel = ap.getByRole('search', { name: 'Search messages in this chat' });
  await panel.waitFor();
  await ap.keyboard.press('Escape');
  await panel.waitFor({ state: 'hidden' });
  assert.equal(await button.getAttribute('aria-expanded'), 'false');
  assert.ok(await button.evaluate((el) => el === document.activeElement), 'focus is back on the button');
  // from inside the list of hits too
  await ap.keyboard.press('Enter');
  await searchFor(ap, 'wombat');
  await ap.keyboard.press('ArrowDown');
  assert.ok(await hits(ap).first().evaluate((el) => el === document.activeElement));
  await ap.keyboard.press('Escape');
  await panel.waitFor({ state: 'hidden' });
  assert.ok(await button.evaluate((el) => el === document.activeElement));
});

test('an encrypted chat says that its encrypted messages cannot be found', async () => {
  const ap = amy.page;
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
  const box = ap.getByRole('textbox', { name: 'Message' });
  await box.fill('encrypted numbat secret');
  await box.press('Enter');
  await ap.waitForFunction(() => [...document.querySelectorAll('.msg-row.own')].pop()?.dataset.id);
  await searchFor(ap, 'numbat');
  await ap.locator('.msg-search-status', { hasText: 'No messages match' }).waitFor();
  assert.match(await ap.locator('.msg-search-note').innerText(), /Encrypted messages cannot be searched/);
  await ap.keyboard.press('Escape');
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
});

test('at 375 px, with the keyboard alone: search, choose a hit, read it', async () => {
  const { context, page } = await person(browser, server, { width: 375, height: 740, name: 'ben-mobile' });
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(B.username);
  await page.getByLabel('Password').fill(B.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await openChat(page, chatId);
  const button = page.getByRole('button', { name: 'Search messages' });
  assert.ok(await button.isVisible(), 'the search button fits in the header');
  await button.focus();
  await page.keyboard.press('Enter');
  await page.keyboard.type('quokka');
  await page.locator('.msg-search-status', { hasText: 'found' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal overflow (${overflow})`);
  await shot(page, 'mobile-search');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  assert.match(await page.evaluate(() => document.activeElement.innerText), /Quokka archive/);
  await page.keyboard.press('Enter');
  const target = page.locator('.msg-row.jump-target', { hasText: 'Quokka archive' });
  await target.waitFor();
  assert.ok(await target.evaluate((el) => el === document.activeElement));
  const box = await target.locator('.bubble').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 375, 'the message fits the screen');
  await shot(page, 'mobile-search-jump');
  assert.deepEqual(cspErrors(page), []);
  await context.close();
});

test('jumping to a message of another chat opens that chat first', async () => {
  const ap = amy.page;
  await ap.goto(`/chat/${otherChatId}`);
  await ap.locator('.msg-row', { hasText: 'another chat' }).waitFor();
  const shown = await ap.evaluate(async ({ chatId, oldHitId }) => (await import('/js/views/jump.js')).jumpToMessage(chatId, oldHitId), { chatId, oldHitId });
  assert.equal(shown, true);
  assert.equal(new URL(ap.url()).pathname, `/chat/${chatId}`);
  const target = ap.locator('.msg-row.jump-target', { hasText: 'Quokka archive' });
  await target.waitFor();
  assert.ok(await target.evaluate((el) => el === document.activeElement));
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(amy.page, ben.page, cyd.page), []);
  const uncaught = [amy, ben, cyd].flatMap((p) => p.page.errors).filter((e) => !e.includes(' console: '));
  assert.deepEqual(uncaught, [], 'no uncaught exceptions in the pages');
});
