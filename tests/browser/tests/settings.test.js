// The settings page: the profile, a password change (the new password signs in, the
// other devices are signed out), the devices list (signing one device out, or all the
// others, sends them to the sign-in page with a notice and no reconnect loop),
// blocking and unblocking, the export and the deletion of the account.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Parley, launchBrowser, person, register, login, sleep, cspErrors } from '../lib/harness.js';

const ANN = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const BOB = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };
const NEW_PASSWORD = 'a brand new passphrase';

let server;
let browser;
let ann;
let bob;

before(async () => {
  server = await new Parley('settings').start();
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  bob = await person(browser, server, { name: 'bob' });
  await register(ann.page, ANN);
  await register(bob.page, BOB);
});

after(async () => {
  const errors = [...(ann?.page.errors || []), ...(bob?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

const idOf = (name) => Number(server.query(`SELECT id FROM users WHERE username = '${name}'`)[0][0]);

/** Opens the settings from the account menu, as a person would. */
async function openSettings(page) {
  await page.getByRole('button', { name: 'Account menu' }).click();
  await page.getByRole('menuitem', { name: 'Settings' }).click();
  await page.waitForURL((u) => u.pathname === '/settings');
  await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
}

/** A second device of someone: a fresh browser context, signed in. */
async function device(creds, name) {
  const d = await person(browser, server, { name });
  await login(d.page, creds);
  return d;
}

/** Waits until a page was sent to the sign-in page with the "signed out" notice. */
async function signedOut(page, timeout = 8000) {
  await page.waitForURL((u) => u.pathname === '/login', { timeout });
  await page.getByText('You were signed out').waitFor({ timeout: 2000 });
  assert.equal(await page.evaluate(() => localStorage.getItem('parley:token')), null, 'the token is gone');
}

/** Counts the WebSocket connections a page opens from now on. */
function countSockets(page) {
  const counter = { n: 0 };
  page.on('websocket', () => {
    counter.n += 1;
  });
  return counter;
}

test('the settings page shows the profile and this device', async () => {
  const p = ann.page;
  await openSettings(p);
  assert.equal(await p.locator('.profile-username').textContent(), 'ann');
  assert.equal(await p.locator('.profile-email').textContent(), ANN.email);
  const current = p.locator('.session.current');
  await current.waitFor();
  await current.getByText('This device').waitFor();
  assert.equal(await p.locator('.session').count(), 1);
  // a reload keeps the page (the server serves the app for /settings)
  await p.reload();
  await p.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
});

test('signing out another device sends it to the sign-in page, once', async () => {
  const p = ann.page;
  const other = await device(ANN, 'ann-laptop');
  const sockets = countSockets(other.page);
  await p.goto('/settings');
  await p.locator('.session').nth(1).waitFor();
  assert.equal(await p.locator('.session').count(), 2);
  const row = p.locator('.session:not(.current)');
  const t0 = Date.now();
  await row.getByRole('button', { name: /^Sign out/ }).click();
  await signedOut(other.page, 5000);
  const took = Date.now() - t0;
  await p.locator('.session').nth(1).waitFor({ state: 'detached' });
  // no reconnect loop: nothing more is tried with the dead session
  const before = sockets.n;
  await sleep(2500);
  assert.equal(sockets.n, before, 'no new WebSocket after the sign-out');
  assert.equal(new URL(other.page.url()).pathname, '/login');
  console.log(`# the other device was on the sign-in page ${took} ms after the click`);
  await other.context.close();
});

test('an HTTP call with a revoked token signs out too', async () => {
  const p = ann.page;
  const other = await device(ANN, 'ann-phone');
  // its WebSocket is put away first, so only the HTTP answer can tell it
  await other.page.evaluate(() => window.parley.socket.stop());
  await p.goto('/settings');
  await p.locator('.session').nth(1).waitFor();
  await p.getByRole('button', { name: 'Sign out of all other devices' }).click();
  await p.locator('.session').nth(1).waitFor({ state: 'detached' });
  assert.equal(new URL(other.page.url()).pathname, '/', 'nothing told it yet');
  await other.page.evaluate(() => window.parley.loadChats().catch(() => {}));
  await signedOut(other.page, 5000);
  await other.context.close();
});

test('sign out of all other devices', async () => {
  const p = ann.page;
  const one = await device(ANN, 'ann-1');
  const two = await device(ANN, 'ann-2');
  await p.goto('/settings');
  await p.locator('.session').nth(2).waitFor();
  await p.getByRole('button', { name: 'Sign out of all other devices' }).click();
  await Promise.all([signedOut(one.page, 5000), signedOut(two.page, 5000)]);
  await p.locator('.session').nth(1).waitFor({ state: 'detached' });
  assert.equal(await p.locator('.session.current').count(), 1, 'this device stays signed in');
  await one.context.close();
  await two.context.close();
});

test('changing the password: errors shown, the new one signs in, other devices signed out', async () => {
  const p = ann.page;
  const other = await device(ANN, 'ann-tablet');
  await p.goto('/settings');
  const current = p.getByLabel('Current password');
  const next = p.getByLabel('New password', { exact: true });
  const again = p.getByLabel('Repeat the new password');
  const change = p.getByRole('button', { name: 'Change password' });

  await current.fill('not my password');
  await next.fill(NEW_PASSWORD);
  await again.fill(NEW_PASSWORD);
  await change.click();
  await p.locator('#settings-password-section .form-error', { hasText: 'The current password is wrong.' }).waitFor();

  await current.fill(ANN.password);
  await again.fill(`${NEW_PASSWORD}!`);
  await change.click();
  await p.locator('#settings-password-section .form-error', { hasText: 'not the same' }).waitFor();

  await next.fill('short');
  await again.fill('short');
  await change.click();
  await p.locator('#settings-password-section .form-error', { hasText: '8 to 128' }).waitFor();

  await next.fill(NEW_PASSWORD);
  await again.fill(NEW_PASSWORD);
  await change.click();
  await p.getByText('Password changed. Your other devices were signed out.').waitFor();
  await signedOut(other.page, 5000);
  // this device is still signed in and connected
  await p.locator('.me-status.ok').waitFor();
  await p.reload();
  await p.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();

  // the old password no longer signs in; the new one does
  await other.page.getByLabel('Email or username').fill('ann');
  await other.page.getByLabel('Password').fill(ANN.password);
  await other.page.getByRole('button', { name: 'Sign in' }).click();
  await other.page.getByText('Wrong email/username or password.').waitFor();
  await login(other.page, { username: 'ann', password: NEW_PASSWORD });
  await other.context.close();
  ANN.password = NEW_PASSWORD;
});

test('blocking from a direct chat, unblocking in the settings', async () => {
  const ap = ann.page;
  const bp = bob.page;
  const chatId = await ap.evaluate(async (id) => (await window.parley.openDirect(id)).id, idOf('bob'));
  await ap.goto(`/chat/${chatId}`);
  await ap.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  await ap.getByRole('dialog').getByRole('button', { name: 'Block bob' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Block' }).click();
  await ap.getByRole('dialog').getByRole('button', { name: 'Unblock bob' }).waitFor();
  await ap.keyboard.press('Escape');
  await ap.locator('.chat-state', { hasText: 'You blocked bob' }).waitFor();

  // bob's messages no longer reach ann: refused with a plain `forbidden`
  await bp.goto(`/chat/${chatId}`);
  await bp.locator('.me-status.ok').waitFor();
  const refused = await bp.evaluate((id) => window.parley.socket.request('message:send', {
    chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'can you hear me?',
  }).then(() => null, (e) => e.code), chatId);
  assert.equal(refused, 'forbidden');

  await openSettings(ap);
  const row = ap.locator('.blocked-user', { hasText: 'bob' });
  await row.waitFor();
  await row.getByRole('button', { name: 'Unblock bob' }).click();
  await ap.getByText('You have not blocked anyone.').waitFor();
  const sent = await bp.evaluate((id) => window.parley.socket.request('message:send', {
    chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'hello again',
  }).then(() => 'ok', (e) => e.code), chatId);
  assert.equal(sent, 'ok');
});

test('export my data downloads my profile and the messages I sent', async () => {
  const ap = ann.page;
  const chatId = await ap.evaluate(async (id) => {
    const chat = await window.parley.openDirect(id);
    await window.parley.socket.request('message:send', { chatId: chat.id, clientId: crypto.randomUUID(), kind: 'text', content: 'a line for the export' });
    return chat.id;
  }, idOf('bob'));
  assert.ok(chatId);
  await ap.goto('/settings');
  const [download] = await Promise.all([
    ap.waitForEvent('download'),
    ap.getByRole('button', { name: 'Export my data' }).click(),
  ]);
  const path = await download.path();
  const bytes = readFileSync(path);
  const text = bytes[0] === 0x50 && bytes[1] === 0x4b ? null : bytes.toString('utf8'); // a zip starts with PK
  if (text !== null) {
    const doc = JSON.parse(text);
    const flat = JSON.stringify(doc);
    assert.ok(flat.includes('ann@example.com'), 'the profile is in it');
    assert.ok(flat.includes('a line for the export'), 'the messages sent are in it');
    assert.ok(!flat.includes('hello again'), 'not what others sent');
  } else {
    assert.ok(bytes.length > 22, 'a zip with something in it');
  }
  await ap.getByText(/^Downloaded /).waitFor();
});

test('deleting the account: the password confirms it, then it is gone', async () => {
  const ap = ann.page;
  const bp = bob.page;
  const annId = idOf('ann');
  const other = await device(ANN, 'ann-old-phone');
  await ap.goto('/settings');
  const pw = ap.getByLabel('Your password');
  await pw.fill('wrong password');
  await ap.getByRole('button', { name: 'Delete my account' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Delete account' }).click();
  await ap.locator('#settings-delete-section .form-error', { hasText: 'The password is wrong.' }).waitFor();
  // cancelling the confirmation deletes nothing
  await pw.fill(ANN.password);
  await ap.getByRole('button', { name: 'Delete my account' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Cancel' }).click();
  assert.equal(server.query(`SELECT deleted_at IS NULL FROM users WHERE id = ${annId}`)[0][0], '1');

  await ap.getByRole('button', { name: 'Delete my account' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Delete account' }).click();
  await ap.waitForURL((u) => u.pathname === '/login');
  await ap.getByText('Your account was deleted.').waitFor();
  await signedOut(other.page, 5000);
  await other.context.close();

  // erased in the database; the name is free again; it cannot sign in
  const [row] = server.query(`SELECT email IS NULL, username IS NULL, password_hash IS NULL, deleted_at IS NOT NULL FROM users WHERE id = ${annId}`);
  assert.deepEqual(row, ['1', '1', '1', '1']);
  await ap.getByLabel('Email or username').fill('ann');
  await ap.getByLabel('Password').fill(ANN.password);
  await ap.getByRole('button', { name: 'Sign in' }).click();
  await ap.getByText('Wrong email/username or password.').waitFor();

  // bob still has her messages, from "Deleted account"
  const chatId = Number(server.query(`SELECT chat_id FROM messages WHERE sender_id = ${annId} ORDER BY id DESC LIMIT 1`)[0][0]);
  await bp.goto(`/chat/${chatId}`);
  await bp.locator('.msg-row.theirs', { hasText: 'a line for the export' }).waitFor();
  await bp.locator('.chat-title', { hasText: 'Deleted account' }).waitFor();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(ann.page, bob.page), []);
});
