// The chat list of someone in many chats (older pages load as the list scrolls) and
// leaving a group (gone here, on the user's other tabs, and the others are told).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, sleep, cspErrors } from '../lib/harness.js';

const C = { email: 'carol@example.com', username: 'carol', password: 'correct horse battery' };
const D = { email: 'dave@example.com', username: 'dave', password: 'battery staple horse' };
const BULK = 120;

let server;
let browser;
let carol;
let dave;

before(async () => {
  server = await new Parley('chats').start();
  browser = await launchBrowser();
  carol = await person(browser, server, { name: 'carol' });
  dave = await person(browser, server, { name: 'dave' });
  await register(carol.page, C);
  await register(dave.page, D);
});

after(async () => {
  const errors = [...(carol?.page.errors || []), ...(dave?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

const idOf = (name) => Number(server.query(`SELECT id FROM users WHERE username = '${name}'`)[0][0]);

test('a long chat list shows the newest first and loads older pages as it scrolls', async () => {
  const cp = carol.page;
  const carolId = idOf('carol');
  const daveId = idOf('dave');
  // 120 groups of carol and dave, straight into MySQL (the server limits how fast
  // anyone can start chats); one creation time, so the id orders them.
  server.query(`INSERT INTO chats (kind, title, created_by) SELECT 'group', CONCAT('bulk ', seq), ${daveId} FROM seq_1_to_${BULK}`);
  for (const id of [carolId, daveId]) {
    server.query(`INSERT INTO chat_members (chat_id, user_id) SELECT id, ${id} FROM chats WHERE title LIKE 'bulk %'`);
  }
  await cp.reload();
  await cp.locator('.chat-item', { hasText: `bulk ${BULK}` }).waitFor();
  const first = await cp.locator('.chat-item').count();
  assert.ok(first < BULK, `only the first page at first (${first})`);
  assert.equal(await cp.locator('.chat-item', { hasText: /^bulk 1$/ }).count(), 0);
  for (let i = 0; i < 30 && (await cp.locator('.chat-item').count()) < BULK; i++) {
    await cp.locator('.chat-scroll').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await sleep(300);
  }
  const ids = await cp.locator('.chat-item').evaluateAll((els) => els.map((e) => Number(e.dataset.chatId)));
  assert.equal(ids.length, BULK, 'every chat, once scrolled to the end');
  assert.equal(new Set(ids).size, ids.length, 'no chat twice');
  assert.deepEqual(ids, [...ids].sort((x, y) => y - x), 'newest first');
  assert.equal(await cp.locator('.chat-more').count(), 0, 'nothing more to load');
});

test('leaving a group removes it from every tab and tells the others', async () => {
  const cp = carol.page;
  const dp = dave.page;
  const daveId = idOf('dave');
  const chatId = await cp.evaluate(async (id) => {
    const chat = await window.parley.createGroup('Leavers', [id]);
    await window.parley.socket.request('message:send', { chatId: chat.id, clientId: crypto.randomUUID(), kind: 'text', content: 'hello leavers' });
    return chat.id;
  }, daveId);
  await dp.locator('.chat-item', { hasText: 'Leavers' }).waitFor();
  // A second tab of carol's, which must drop the group too.
  const other = await carol.context.newPage();
  await other.goto('/');
  await other.locator('.chat-item', { hasText: 'Leavers' }).waitFor();

  await cp.goto(`/chat/${chatId}`);
  await cp.locator('.chat-title', { hasText: 'Leavers' }).waitFor();
  cp.once('dialog', (d) => d.accept());
  const item = cp.locator('.chat-list li', { has: cp.locator('.chat-item', { hasText: 'Leavers' }) });
  await item.hover();
  await item.getByRole('button', { name: 'Leave group Leavers' }).click();
  await cp.waitForURL((u) => u.pathname === '/');
  await cp.locator('.chat-item', { hasText: 'Leavers' }).waitFor({ state: 'detached' });
  await other.locator('.chat-item', { hasText: 'Leavers' }).waitFor({ state: 'detached' });
  await dp.waitForFunction(
    (id) => window.parley.chats.get(id)?.members.length === 1,
    chatId,
  );
  // Coming back by its address shows it is not hers any more.
  await cp.goto(`/chat/${chatId}`);
  await cp.getByRole('heading', { name: 'This chat is not yours' }).waitFor();
  await other.close();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(carol.page, dave.page), []);
});
