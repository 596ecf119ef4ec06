// Message actions between two people in two browser contexts: reply (quote on both
// sides, jump to the original), edit, delete for everyone, reactions, copy, the
// keyboard-only menu, an encrypted edit, a 375 px phone with a long press, and a client
// that was offline (socket down, or closed) converging on the final state.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, shot, sleep, cspErrors, withProductionCsp } from '../lib/harness.js';

const A = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const B = { email: 'ben@example.com', username: 'ben', password: 'battery staple horse' };

let server;
let browser;
let ann;
let ben;
let chatPath;
let chatId;

const box = (page) => page.getByRole('textbox', { name: 'Message' });
/** The row of the message whose own text (not a quote) contains `text`. */
const row = (page, text) => page.locator('.msg-row').filter({ has: page.locator('.bubble > .text', { hasText: text }) });
const rowById = (page, id) => page.locator(`.msg-row[data-id="${id}"]`);
const chip = (r, emoji) => r.locator('.chip-reaction', { has: r.page().locator('.chip-emoji', { hasText: emoji }) });

async function send(page, text) {
  await box(page).fill(text);
  await box(page).press('Enter');
}

/** Sends and waits until the server has it (the row has an id); returns the id. */
async function sendStored(page, text) {
  await send(page, text);
  const r = row(page, text).last();
  await r.and(page.locator('.msg-row[data-id]:not([data-id=""])')).waitFor();
  return Number(await r.getAttribute('data-id'));
}

async function menuOf(page, r) {
  await r.hover();
  await r.getByRole('button', { name: 'Message actions' }).click();
  const menu = page.getByRole('menu', { name: 'Message actions' });
  await menu.waitFor();
  return menu;
}

async function chipText(r, emoji) {
  const c = chip(r, emoji);
  if (!(await c.count())) return null;
  return (await c.innerText()).replace(/\s+/g, ' ').trim();
}

function dbMessage(id) {
  const [r] = server.query(`SELECT content, reply_to_id, edited_at IS NOT NULL, deleted_at IS NOT NULL, e2ee FROM messages WHERE id = ${Number(id)}`);
  return { content: r[0], replyToId: r[1] === 'NULL' ? null : Number(r[1]), edited: r[2] === '1', deleted: r[3] === '1', e2ee: r[4] };
}

/** What a page shows of each loaded message: text, edited, deleted, quote, chips. */
function snapshot(page) {
  return page.locator('.msg-row[data-id]').evaluateAll((els) => Object.fromEntries(els.filter((e) => e.dataset.id).map((e) => [e.dataset.id, {
    text: e.querySelector('.bubble > .text')?.textContent ?? null,
    edited: !!e.querySelector('.meta .edited'),
    deleted: !!e.querySelector('.bubble.deleted'),
    quote: e.querySelector('.reply-quote .quote-text')?.textContent ?? null,
    chips: [...e.querySelectorAll('.chip-reaction')].map((c) => `${c.textContent.replace(/\s+/g, ' ').trim()}${c.getAttribute('aria-pressed') === 'true' ? '*' : ''}`).join(' '),
  }])));
}

async function signIn(page, who) {
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.locator('.me-status.ok').waitFor({ timeout: 15000 });
}

before(async () => {
  server = await new Parley('actions').start();
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  ben = await person(browser, server, { name: 'ben' });
  await ben.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
});

after(async () => {
  const errors = [...(ann?.page.errors || []), ...(ben?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

test('two people open a chat', async () => {
  const ap = ann.page;
  const bp = ben.page;
  await register(ap, A);
  await register(bp, B);
  await ap.getByLabel('Search people').fill('be');
  await ap.locator('.person', { hasText: 'ben' }).click();
  await ap.waitForURL(/\/chat\/\d+$/);
  chatPath = new URL(ap.url()).pathname;
  chatId = Number(chatPath.split('/').pop());
  await sendStored(ap, 'Hello Ben');
  await bp.goto(chatPath);
  await row(bp, 'Hello Ben').waitFor();
});

test('a reply quotes its original on both sides, and the quote jumps to it', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const originalId = await sendStored(ap, 'Where shall we meet?');
  // enough messages after it that it scrolls out of view
  await ap.evaluate(async (id) => {
    for (let i = 1; i <= 30; i++) await window.parley.sendText(id, `filler ${i}`);
  }, chatId);
  await row(bp, /^filler 30$/).waitFor();
  await ap.waitForFunction(() => !document.querySelector('.msg-row[data-status="pending"]'));

  // Reply, cancel, reply again
  let menu = await menuOf(bp, row(bp, 'Where shall we meet?'));
  await menu.getByRole('menuitem', { name: 'Reply' }).click();
  const bar = bp.locator('.compose-mode');
  await bar.getByText('Replying to ann').waitFor();
  assert.match(await bar.innerText(), /Where shall we meet\?/);
  assert.equal(await bp.evaluate(() => document.activeElement?.id), 'composer-input', 'the composer has focus');
  await bp.getByRole('button', { name: 'Cancel reply' }).click();
  assert.ok(await bar.isHidden(), 'the reply bar is gone');
  menu = await menuOf(bp, row(bp, 'Where shall we meet?'));
  await menu.getByRole('menuitem', { name: 'Reply' }).click();
  await send(bp, 'At the station');
  assert.ok(await bar.isHidden(), 'sending ends the reply');

  const own = row(bp, 'At the station');
  await own.locator('.reply-quote', { hasText: 'Where shall we meet?' }).waitFor();
  assert.match(await own.locator('.quote-sender').innerText(), /ann/);
  const theirs = row(ap, 'At the station');
  await theirs.locator('.reply-quote', { hasText: 'Where shall we meet?' }).waitFor();
  assert.equal(await theirs.locator('.quote-sender').innerText(), 'You');
  await bp.waitForFunction(() => [...document.querySelectorAll('.msg-row.own')].pop()?.dataset.id);
  const replyId = Number(await own.getAttribute('data-id'));
  assert.equal(dbMessage(replyId).replyToId, originalId, 'stored with reply_to_id');

  // The original is out of view; the quote brings it into view.
  const original = rowById(ap, originalId);
  const inView = () => ap.evaluate((id) => {
    const el = document.querySelector(`.msg-row[data-id="${id}"]`);
    const sc = document.querySelector('.messages').getBoundingClientRect();
    const r = el?.getBoundingClientRect();
    return !!r && r.bottom > sc.top && r.top < sc.bottom;
  }, originalId);
  assert.equal(await inView(), false, 'the original starts out of view');
  await theirs.locator('.reply-quote').click();
  await ap.waitForFunction((id) => {
    const el = document.querySelector(`.msg-row[data-id="${id}"]`);
    const sc = document.querySelector('.messages').getBoundingClientRect();
    const r = el?.getBoundingClientRect();
    return !!r && r.top >= sc.top - 2 && r.bottom <= sc.bottom + 2;
  }, originalId, { timeout: 5000 });
  assert.ok(await original.isVisible());
  await shot(ap, 'actions-reply-jump');
});

test('an edit shows on the other side with "edited", and updates quotes of it', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const r = row(ap, 'Where shall we meet?');
  const id = Number(await r.getAttribute('data-id'));

  // Escape leaves edit mode and gives the draft back
  await box(ap).fill('half-written draft');
  let menu = await menuOf(ap, r);
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  assert.equal(await box(ap).inputValue(), 'Where shall we meet?');
  await ap.locator('.compose-mode', { hasText: 'Editing message' }).waitFor();
  await box(ap).press('Escape');
  assert.equal(await box(ap).inputValue(), 'half-written draft');
  assert.ok(await ap.locator('.compose-mode').isHidden());
  await box(ap).fill('');

  menu = await menuOf(ap, r);
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  await box(ap).fill('Where shall we meet tonight?');
  await box(ap).press('Enter');
  await rowById(ap, id).locator('.text', { hasText: 'Where shall we meet tonight?' }).waitFor();
  await rowById(ap, id).locator('.edited', { hasText: 'edited' }).waitFor();
  assert.equal(await box(ap).inputValue(), '', 'the composer is empty again');

  const theirs = rowById(bp, id);
  await theirs.locator('.text', { hasText: 'Where shall we meet tonight?' }).waitFor();
  assert.equal(await theirs.locator('.meta .edited').innerText(), 'edited');
  // the reply quoting it follows
  await row(bp, 'At the station').locator('.quote-text', { hasText: 'tonight?' }).waitFor();
  const db = dbMessage(id);
  assert.equal(db.content, 'Where shall we meet tonight?');
  assert.ok(db.edited, 'edited_at is set');

  // another person's message offers no Edit (and no Delete)
  menu = await menuOf(ap, row(ap, 'At the station'));
  const items = await menu.getByRole('menuitem').allInnerTexts();
  assert.deepEqual(items.map((t) => t.trim()), ['Reply', 'Copy', 'React']);
  await ap.keyboard.press('Escape');
  assert.equal(await menu.count(), 0, 'Escape closes the menu');
});

test('delete for everyone asks first, then both sides show "Message deleted"', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const r = row(ap, 'Where shall we meet tonight?');
  const id = Number(await r.getAttribute('data-id'));
  let menu = await menuOf(ap, r);
  await menu.getByRole('menuitem', { name: 'Delete for everyone' }).click();
  let dialog = ap.getByRole('dialog', { name: 'Please confirm' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await sleep(300);
  assert.equal(dbMessage(id).deleted, false, 'cancel deletes nothing');
  assert.ok(await rowById(bp, id).locator('.text', { hasText: 'tonight' }).isVisible());

  menu = await menuOf(ap, r);
  await menu.getByRole('menuitem', { name: 'Delete for everyone' }).click();
  dialog = ap.getByRole('dialog', { name: 'Please confirm' });
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await rowById(ap, id).locator('.bubble.deleted', { hasText: 'Message deleted' }).waitFor();
  await rowById(bp, id).locator('.bubble.deleted', { hasText: 'Message deleted' }).waitFor();
  assert.equal(await rowById(bp, id).getByRole('button', { name: 'Message actions' }).count(), 0, 'nothing to act on');
  // the reply quoting it says so too, on both sides
  await row(bp, 'At the station').locator('.quote-text', { hasText: 'Message deleted' }).waitFor();
  await row(ap, 'At the station').locator('.quote-text', { hasText: 'Message deleted' }).waitFor();
  const db = dbMessage(id);
  assert.ok(db.deleted, 'deleted_at is set');
  assert.equal(db.content, '', 'the content is gone');

  // deleting the newest message shows in the other person's chat list
  const lastId = await sendStored(ap, 'Oops, wrong chat');
  await row(bp, 'Oops, wrong chat').waitFor();
  menu = await menuOf(ap, rowById(ap, lastId));
  await menu.getByRole('menuitem', { name: 'Delete for everyone' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Delete' }).click();
  await rowById(bp, lastId).locator('.bubble.deleted').waitFor();
  await bp.locator('.chat-item .preview', { hasText: 'Message deleted' }).waitFor();
  // and it stays deleted after a reload
  await bp.reload();
  await rowById(bp, lastId).locator('.bubble.deleted', { hasText: 'Message deleted' }).waitFor();
});

test('reactions show as chips with counts on both sides; your own chip removes yours', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const rb = row(bp, 'Hello Ben');
  const ra = row(ap, 'Hello Ben');
  await rb.scrollIntoViewIfNeeded();
  await rb.hover();
  await rb.getByRole('button', { name: 'React' }).click();
  const picker = bp.getByRole('toolbar', { name: 'Pick a reaction' });
  for (const e of ['👍', '❤️', '😂', '😮', '😢', '🙏']) assert.equal(await picker.getByRole('button', { name: e, exact: true }).count(), 1, e);
  await picker.getByRole('button', { name: '👍', exact: true }).click();
  await chip(rb, '👍').waitFor();
  assert.equal(await chipText(rb, '👍'), '👍 1');
  assert.equal(await chip(rb, '👍').getAttribute('aria-pressed'), 'true');
  await ap.waitForFunction(() => [...document.querySelectorAll('.chip-reaction')].some((c) => c.textContent.includes('👍')));
  assert.equal(await chipText(ra, '👍'), '👍 1');
  assert.equal(await chip(ra, '👍').getAttribute('aria-pressed'), 'false');

  // Ann adds hers by clicking Ben's chip: 2 on both sides
  await chip(ra, '👍').click();
  await ra.locator('.chip-reaction[aria-pressed="true"]', { hasText: '👍 2' }).waitFor();
  await rb.locator('.chip-reaction', { hasText: '👍 2' }).waitFor();
  // clicking her own removes hers
  await chip(ra, '👍').click();
  await ra.locator('.chip-reaction[aria-pressed="false"]', { hasText: '👍 1' }).waitFor();
  await rb.locator('.chip-reaction[aria-pressed="true"]', { hasText: '👍 1' }).waitFor();
  // a second emoji through the menu's React item
  const menu = await menuOf(ap, ra);
  await menu.getByRole('menuitem', { name: 'React' }).click();
  await ap.getByRole('toolbar', { name: 'Pick a reaction' }).getByRole('button', { name: '❤️', exact: true }).click();
  await rb.locator('.chip-reaction', { hasText: '❤️ 1' }).waitFor();
  // Ben removes his 👍: the chip is gone on both sides
  await chip(rb, '👍').click();
  await rb.locator('.chip-reaction', { hasText: '👍' }).waitFor({ state: 'detached' });
  await ra.locator('.chip-reaction', { hasText: '👍' }).waitFor({ state: 'detached' });
  assert.equal(await chipText(ra, '❤️'), '❤️ 1');
  const stored = server.query(`SELECT emoji FROM message_reactions WHERE message_id = ${Number(await ra.getAttribute('data-id'))}`).map((x) => x[0]);
  assert.deepEqual(stored, ['❤️']);
});

test('Copy puts the text on the clipboard', async () => {
  const bp = ben.page;
  const menu = await menuOf(bp, row(bp, 'Hello Ben'));
  await menu.getByRole('menuitem', { name: 'Copy' }).click();
  await bp.waitForFunction(async () => (await navigator.clipboard.readText()) === 'Hello Ben', null, { timeout: 5000 });
  assert.equal(await bp.evaluate(() => navigator.clipboard.readText()), 'Hello Ben');
});

test('keyboard only: open the menu, move with arrows, Escape returns focus, react', async () => {
  const ap = ann.page;
  const bp = ben.page;
  // Ben reads the newest messages (the copy above left him further up)
  await bp.locator('.messages').evaluate((el) => {
    el.scrollTop = el.scrollHeight;
  });
  const id = await sendStored(ap, 'Keyboard check');
  const r = rowById(bp, id);
  await r.waitFor();
  await bp.locator('.jump-btn').waitFor({ state: 'hidden' });
  await bp.waitForFunction(() => !document.querySelector('.msg-row[data-status="pending"]'));
  await box(bp).focus();
  const focused = () => bp.evaluate(() => {
    const a = document.activeElement;
    return `${a?.getAttribute('role') || a?.tagName.toLowerCase()}:${a?.getAttribute('aria-label') || a?.textContent.trim()}`;
  });
  // from the composer back to the newest message's buttons
  await bp.keyboard.press('Shift+Tab');
  assert.equal(await focused(), 'button:Message actions');
  assert.equal(await bp.evaluate(() => document.activeElement.closest('.msg-row')?.dataset.id), String(id));
  // hidden until hover or focus: now shown
  await bp.waitForFunction((mid) => getComputedStyle(document.querySelector(`.msg-row[data-id="${mid}"] .msg-tools`)).opacity === '1', id);
  await bp.keyboard.press('Enter');
  await bp.getByRole('menu', { name: 'Message actions' }).waitFor();
  assert.equal(await focused(), 'menuitem:Reply');
  await bp.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'menuitem:Copy');
  await bp.keyboard.press('End');
  assert.equal(await focused(), 'menuitem:React');
  await bp.keyboard.press('ArrowDown');
  assert.equal(await focused(), 'menuitem:Reply', 'wraps around');
  await bp.keyboard.press('Escape');
  assert.equal(await bp.getByRole('menu').count(), 0);
  assert.equal(await focused(), 'button:Message actions', 'focus is back on the button');
  // again, to React: the picker takes focus, arrows move, Enter reacts
  await bp.keyboard.press('Enter');
  await bp.keyboard.press('ArrowUp');
  assert.equal(await focused(), 'menuitem:React');
  await bp.keyboard.press('Enter');
  await bp.getByRole('toolbar', { name: 'Pick a reaction' }).waitFor();
  assert.equal(await focused(), 'button:👍');
  await bp.keyboard.press('ArrowRight');
  assert.equal(await focused(), 'button:❤️');
  await bp.keyboard.press('Escape');
  assert.equal(await bp.getByRole('toolbar', { name: 'Pick a reaction' }).count(), 0);
  assert.equal(await bp.evaluate(() => document.activeElement.closest('.msg-row')?.dataset.id), String(id), 'focus stays on the message');
  // on the React button, which opens the picker straight away
  assert.equal(await focused(), 'button:React');
  await bp.keyboard.press('Enter');
  await bp.keyboard.press('ArrowRight');
  await bp.keyboard.press('ArrowRight');
  assert.equal(await focused(), 'button:😂');
  await bp.keyboard.press('Enter');
  await r.locator('.chip-reaction[aria-pressed="true"]', { hasText: '😂 1' }).waitFor();
  await rowById(ap, id).locator('.chip-reaction', { hasText: '😂 1' }).waitFor();
  assert.equal(await bp.evaluate(() => document.activeElement.closest('.msg-row')?.dataset.id), String(id), 'focus is back on the message');
  // the chip is reachable and toggles with the keyboard as well
  await bp.keyboard.press('Tab');
  await bp.keyboard.press('Tab');
  assert.equal(await focused(), 'button:😂 1');
  await bp.keyboard.press('Enter');
  await rowById(ap, id).locator('.chip-reaction').waitFor({ state: 'detached' });
  // right click opens the same menu at the pointer
  await r.locator('.bubble').click({ button: 'right' });
  await bp.getByRole('menu', { name: 'Message actions' }).waitFor();
  await bp.keyboard.press('Escape');
});

test('in an encrypted chat an edit is encrypted again and a reply quote is decrypted locally', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const lock = ap.getByRole('switch', { name: 'End-to-end encryption' });
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'true');
  const id = await sendStored(ap, 'Secret plan A');
  await rowById(bp, id).locator('.text', { hasText: 'Secret plan A' }).waitFor();
  const before = dbMessage(id);
  assert.equal(before.content, '');

  // Ben answers it (his chat is not encrypted): the server has no preview, the clients decrypt
  let menu = await menuOf(bp, rowById(bp, id));
  await menu.getByRole('menuitem', { name: 'Reply' }).click();
  await bp.locator('.compose-mode .mode-preview', { hasText: 'Secret plan A' }).waitFor();
  await send(bp, 'Understood');
  await row(ap, 'Understood').locator('.quote-text', { hasText: 'Secret plan A' }).waitFor();
  await row(bp, 'Understood').locator('.quote-text', { hasText: 'Secret plan A' }).waitFor();

  menu = await menuOf(ap, rowById(ap, id));
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  assert.equal(await box(ap).inputValue(), 'Secret plan A', 'the decrypted text to edit');
  await box(ap).fill('Secret plan B');
  await box(ap).press('Enter');
  await rowById(ap, id).locator('.text', { hasText: 'Secret plan B' }).waitFor();
  await rowById(bp, id).locator('.text', { hasText: 'Secret plan B' }).waitFor();
  await rowById(bp, id).locator('.meta .edited').waitFor();
  assert.ok(await rowById(bp, id).locator('.bubble.encrypted').count(), 'still shown as encrypted');
  await row(bp, 'Understood').locator('.quote-text', { hasText: 'Secret plan B' }).waitFor();

  const after = dbMessage(id);
  assert.equal(after.content, '', 'no plaintext stored');
  assert.ok(after.edited);
  assert.ok(!after.e2ee.includes('plan'), 'no plaintext in the envelope');
  assert.notEqual(JSON.parse(after.e2ee).iv, JSON.parse(before.e2ee).iv, 'a new envelope');
  // a reload decrypts the edited envelope from the server
  await bp.reload();
  await rowById(bp, id).locator('.text', { hasText: 'Secret plan B' }).waitFor();
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'false');
});

test('a client whose socket was down gets the missed edits, deletes and reactions on reconnect', async () => {
  const ap = ann.page;
  const bp = ben.page;
  const ids = [];
  for (const t of ['Conv one', 'Conv two', 'Conv three']) ids.push(await sendStored(ap, t));
  await rowById(bp, ids[2]).waitFor();
  // Ben reacts first, while online
  await rowById(bp, ids[2]).hover();
  await rowById(bp, ids[2]).getByRole('button', { name: 'React' }).click();
  await bp.getByRole('toolbar', { name: 'Pick a reaction' }).getByRole('button', { name: '👍', exact: true }).click();
  await rowById(ap, ids[2]).locator('.chip-reaction', { hasText: '👍 1' }).waitFor();
  const cursorBefore = await bp.evaluate(() => window.parley.changes.value);
  assert.ok(cursorBefore > 0, `a change cursor (${cursorBefore})`);

  // Ben's link drops and cannot come back for now
  const sent = [];
  bp.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(String(f.payload))));
  await ben.context.route('**/api/auth/ws-ticket', (r) => r.abort());
  await bp.evaluate(() => window.parley.socket.ws?.close());
  await bp.locator('.conn-banner', { hasText: 'Reconnecting' }).waitFor({ timeout: 10000 });

  // Ann edits, deletes, reacts and un-reacts, and writes once more
  let menu = await menuOf(ap, rowById(ap, ids[0]));
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  await box(ap).fill('Conv one, edited');
  await box(ap).press('Enter');
  await rowById(ap, ids[0]).locator('.edited').waitFor();
  menu = await menuOf(ap, rowById(ap, ids[1]));
  await menu.getByRole('menuitem', { name: 'Delete for everyone' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Delete' }).click();
  await rowById(ap, ids[1]).locator('.bubble.deleted').waitFor();
  const r3 = rowById(ap, ids[2]);
  await chip(r3, '👍').click();
  await r3.locator('.chip-reaction', { hasText: '👍 2' }).waitFor();
  for (const e of ['😂', '🙏']) {
    await r3.hover();
    await r3.getByRole('button', { name: 'React' }).click();
    await ap.getByRole('toolbar', { name: 'Pick a reaction' }).getByRole('button', { name: e, exact: true }).click();
    await r3.locator('.chip-reaction', { hasText: `${e} 1` }).waitFor();
  }
  await chip(r3, '🙏').click();
  await r3.locator('.chip-reaction', { hasText: '🙏' }).waitFor({ state: 'detached' });
  const newId = await sendStored(ap, 'Conv four');
  const annView = await snapshot(ap);

  // Ben comes back: the sync replays what he missed into the open chat, no reload
  await ben.context.unroute('**/api/auth/ws-ticket');
  await bp.evaluate(() => window.dispatchEvent(new Event('online')));
  await bp.locator('.me-status.ok').waitFor({ timeout: 30000 });
  await rowById(bp, ids[0]).locator('.text', { hasText: 'Conv one, edited' }).waitFor();
  await rowById(bp, ids[0]).locator('.meta .edited').waitFor();
  await rowById(bp, ids[1]).locator('.bubble.deleted', { hasText: 'Message deleted' }).waitFor();
  await rowById(bp, ids[2]).locator('.chip-reaction[aria-pressed="true"]', { hasText: '👍 2' }).waitFor();
  await rowById(bp, ids[2]).locator('.chip-reaction', { hasText: '😂 1' }).waitFor();
  await rowById(bp, newId).waitFor();
  assert.equal(await chip(rowById(bp, ids[2]), '🙏').count(), 0, 'the removed reaction is not there');
  const syncs = sent.map((p) => JSON.parse(p)).filter((f) => f.event === 'sync');
  assert.ok(syncs.some((f) => f.data.afterChange === cursorBefore), `sync from the cursor: ${JSON.stringify(syncs)}`);
  const cursorAfter = await bp.evaluate(() => window.parley.changes.value);
  assert.ok(cursorAfter > cursorBefore, `the cursor moved (${cursorBefore} → ${cursorAfter})`);
  assert.equal(await bp.evaluate((k) => sessionStorage.getItem(k), `parley:change-cursor:${await bp.evaluate(() => window.parley.me.id)}`), String(cursorAfter));

  // what Ben sees equals what Ann (online all along) sees, and what a reload shows
  const live = await snapshot(bp);
  for (const id of [...ids, newId]) {
    const a = annView[id];
    const b = live[id];
    assert.equal(b.text, a.text, `text of ${id}`);
    assert.equal(b.edited, a.edited, `edited ${id}`);
    assert.equal(b.deleted, a.deleted, `deleted ${id}`);
    assert.equal(b.chips.replace(/\*/g, ''), a.chips.replace(/\*/g, ''), `chips of ${id}`);
  }
  await bp.reload();
  await rowById(bp, newId).waitFor();
  await rowById(bp, ids[2]).locator('.chip-reaction').first().waitFor();
  const reloaded = await snapshot(bp);
  for (const id of [...ids, newId]) assert.deepEqual(reloaded[id], live[id], `message ${id} after a reload`);
});

test('at 375 px: a long press opens the menu, a closed phone sees the final state when reopened', async () => {
  const ap = ann.page;
  const phone = async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 740 }, hasTouch: true, isMobile: true, baseURL: server.url });
    await withProductionCsp(context, server);
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(`ben-phone: ${e.message}`));
    await signIn(page, B);
    await page.goto(chatPath);
    return { context, page };
  };
  let { context, page } = await phone();
  const id = await sendStored(ap, 'Phone check');
  const r = rowById(page, id);
  await r.locator('.text', { hasText: 'Phone check' }).waitFor();
  // a long touch on the bubble
  const b = await r.locator('.bubble').boundingBox();
  const cdp = await context.newCDPSession(page);
  const at = { x: b.x + b.width / 2, y: b.y + b.height / 2 };
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at] });
  await sleep(800);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  const menu = page.getByRole('menu', { name: 'Message actions' });
  await menu.waitFor({ timeout: 5000 });
  const mb = await menu.boundingBox();
  assert.ok(mb.x >= 0 && mb.x + mb.width <= 375, `the menu fits the screen (${JSON.stringify(mb)})`);
  await menu.getByRole('menuitem', { name: 'React' }).click();
  const picker = page.getByRole('toolbar', { name: 'Pick a reaction' });
  const pb = await picker.boundingBox();
  assert.ok(pb.x >= 0 && pb.x + pb.width <= 375, `the picker fits the screen (${JSON.stringify(pb)})`);
  await picker.getByRole('button', { name: '🙏', exact: true }).click();
  await r.locator('.chip-reaction[aria-pressed="true"]', { hasText: '🙏 1' }).waitFor({ timeout: 10000 }).catch(async (e) => {
    throw new Error(`${e.message}\ntoasts: ${await page.locator('.toast').allInnerTexts()}; socket: ${await page.evaluate(() => window.parley.socket.state)}`);
  });
  await rowById(ap, id).locator('.chip-reaction', { hasText: '🙏 1' }).waitFor();
  // the menu button works there as well, and a reply fits
  const m2 = await menuOf(page, r);
  await m2.getByRole('menuitem', { name: 'Reply' }).click();
  await page.getByRole('button', { name: 'Cancel reply' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal overflow (${overflow})`);
  await shot(page, 'actions-mobile');
  await page.getByRole('button', { name: 'Cancel reply' }).click();
  await context.close();

  // the phone is closed while Ann edits and reacts
  const menuA = await menuOf(ap, rowById(ap, id));
  await menuA.getByRole('menuitem', { name: 'Edit' }).click();
  await box(ap).fill('Phone check, edited');
  await box(ap).press('Enter');
  await rowById(ap, id).locator('.edited').waitFor();
  await chip(rowById(ap, id), '🙏').click();
  await rowById(ap, id).locator('.chip-reaction', { hasText: '🙏 2' }).waitFor();

  ({ context, page } = await phone());
  await rowById(page, id).locator('.text', { hasText: 'Phone check, edited' }).waitFor();
  await rowById(page, id).locator('.meta .edited').waitFor();
  await rowById(page, id).locator('.chip-reaction[aria-pressed="true"]', { hasText: '🙏 2' }).waitFor();
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(ann.page, ben.page), []);
  const uncaught = [...ann.page.errors, ...ben.page.errors].filter((e) => !e.includes(' console: '));
  assert.deepEqual(uncaught, [], 'no uncaught exceptions in the pages');
});
