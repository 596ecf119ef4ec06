// Running a group from its details: rename, add people, make admin, remove, leave —
// each seen live by the other members (title, members, roles) and left in the
// timeline as a plain system line; a member without the right sees no controls; a
// removed member keeps the history and can send nothing.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, cspErrors } from '../lib/harness.js';

const ANN = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const BOB = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };
const CAT = { email: 'cat@example.com', username: 'cat', password: 'staple horse battery' };

let server;
let browser;
let ann;
let bob;
let cat;
let groupId;

before(async () => {
  server = await new Parley('groups').start();
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  bob = await person(browser, server, { name: 'bob' });
  cat = await person(browser, server, { name: 'cat' });
  await register(ann.page, ANN);
  await register(bob.page, BOB);
  await register(cat.page, CAT);
});

after(async () => {
  const errors = [ann, bob, cat].flatMap((x) => x?.page.errors || []);
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

const idOf = (name) => Number(server.query(`SELECT id FROM users WHERE username = '${name}'`)[0][0]);

async function details(page) {
  await page.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  return dialog;
}

async function confirm(page, name) {
  await page.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name }).click();
}

const systemLine = (page, text) => page.locator('.msg-row.system .system-text', { hasText: text });

test('a group is renamed by its owner, seen live with the system line', async () => {
  const ap = ann.page;
  const bp = bob.page;
  groupId = await ap.evaluate(async (id) => (await window.parley.createGroup('Book club', [id])).id, idOf('bob'));
  await ap.goto(`/chat/${groupId}`);
  await bp.goto(`/chat/${groupId}`);
  await bp.locator('.chat-title', { hasText: 'Book club' }).waitFor();

  const d = await details(ap);
  const name = d.getByLabel('Group name');
  await name.fill('Reading circle');
  await d.getByRole('button', { name: 'Rename' }).click();
  await ap.locator('.chat-title', { hasText: 'Reading circle' }).waitFor();
  await ap.keyboard.press('Escape');
  await systemLine(ap, 'You renamed the group to “Reading circle”').waitFor();
  await bp.locator('.chat-title', { hasText: 'Reading circle' }).waitFor();
  await systemLine(bp, 'ann renamed the group to “Reading circle”').waitFor();
  await bp.locator('.chat-item', { hasText: 'Reading circle' }).waitFor();
});

test('a member sees no admin controls; the server refuses them anyway', async () => {
  const bp = bob.page;
  const d = await details(bp);
  await d.locator('.member', { hasText: 'ann' }).getByText('Owner').waitFor();
  assert.equal(await d.getByLabel('Group name').count(), 0, 'no rename');
  assert.equal(await d.getByLabel('Add people').count(), 0, 'no adding');
  assert.equal(await d.getByRole('button', { name: /^Remove / }).count(), 0, 'no removing');
  assert.equal(await d.getByRole('button', { name: /^Make / }).count(), 0, 'no roles');
  await bp.keyboard.press('Escape');
  const code = await bp.evaluate((id) => window.parley.renameGroup(id, 'Hijacked').then(() => null, (e) => e.code), groupId);
  assert.equal(code, 'forbidden');
});

test('the owner adds someone found by search; the new member gets the group', async () => {
  const ap = ann.page;
  const bp = bob.page;
  const cp = cat.page;
  const d = await details(ap);
  await d.getByLabel('Add people').fill('ca');
  await d.getByLabel('cat').check();
  await d.getByRole('button', { name: 'Add to group' }).click();
  await d.locator('.member', { hasText: 'cat' }).waitFor();
  await d.getByRole('heading', { name: 'Members (3)' }).waitFor();
  await ap.keyboard.press('Escape');
  await systemLine(ap, 'You added cat').waitFor();
  await systemLine(bp, 'ann added cat').waitFor();
  await bp.locator('.chat-sub', { hasText: '3 members' }).waitFor();
  await cp.locator('.chat-item', { hasText: 'Reading circle' }).waitFor();
  await cp.goto(`/chat/${groupId}`);
  await systemLine(cp, 'ann added you').waitFor();
});

test('the owner makes a member an admin, who can then remove someone', async () => {
  const ap = ann.page;
  const bp = bob.page;
  const cp = cat.page;
  let d = await details(ap);
  await d.getByRole('button', { name: 'Make admin: bob' }).click();
  await d.locator('.member', { hasText: 'bob' }).getByText('Admin').waitFor();
  await d.getByRole('button', { name: 'Make member: bob' }).waitFor();
  await ap.keyboard.press('Escape');
  await systemLine(bp, 'ann made you an admin').waitFor();
  await systemLine(cp, 'ann made bob an admin').waitFor();

  // bob's open view follows: the details now have the admin controls
  d = await details(bp);
  await d.getByLabel('Group name').waitFor();
  assert.equal(await d.getByRole('button', { name: 'Remove ann' }).count(), 0, 'nobody removes the owner');
  assert.equal(await d.getByRole('button', { name: /^Make / }).count(), 0, 'only the owner sets roles');
  await d.getByRole('button', { name: 'Remove cat' }).click();
  await confirm(bp, 'Remove');
  await d.locator('.member', { hasText: 'cat' }).waitFor({ state: 'detached' });
  await bp.keyboard.press('Escape');
  await systemLine(ap, 'bob removed cat').waitFor();

  // cat keeps what she saw, is told, and cannot write any more
  await cp.locator('.chat-state', { hasText: 'You are no longer a member of this group' }).waitFor();
  assert.equal(await cp.locator('.composer').isHidden(), true, 'no composer');
  assert.ok(await systemLine(cp, 'ann added you').isVisible(), 'the history up to the removal stays');
  // what is said after her removal does not reach her
  await ap.evaluate((id) => window.parley.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'after cat left' }), groupId);
  await bp.locator('.msg-row', { hasText: 'after cat left' }).waitFor();
  assert.equal(await cp.locator('.msg-row', { hasText: 'after cat left' }).count(), 0);
  const code = await cp.evaluate((id) => window.parley.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'let me back' }).then(() => null, (e) => e.code), groupId);
  assert.equal(code, 'forbidden');
});

test('leaving from the details: gone here, a system line for the others', async () => {
  const ap = ann.page;
  const bp = bob.page;
  const d = await details(bp);
  await d.getByRole('button', { name: 'Leave group' }).click();
  await confirm(bp, 'Leave group');
  await bp.waitForURL((u) => u.pathname === '/');
  await bp.locator('.chat-item', { hasText: 'Reading circle' }).waitFor({ state: 'detached' });
  await systemLine(ap, 'bob left').waitFor();
  await ap.locator('.chat-sub', { hasText: /^1 member$/ }).waitFor();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(ann.page, bob.page, cat.page), []);
});
