// Accessibility: axe-core (WCAG 2.1 A and AA rules) on every screen of the web client,
// in the light and the dark colour scheme and at 375 px; any serious or critical
// violation fails the test, with what axe found and where.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Parley, launchBrowser, person, register, sleep, cspErrors } from '../lib/harness.js';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

const A = { email: 'ada@example.com', username: 'ada', password: 'correct horse battery' };
const B = { email: 'bea@example.com', username: 'bea', password: 'battery staple horse' };

let server;
let browser;
let ada;
let bea;
let chatId;

before(async () => {
  server = await new Parley('a11y').start();
  browser = await launchBrowser();
  ada = await person(browser, server, { name: 'ada' });
  bea = await person(browser, server, { name: 'bea' });
});

after(async () => {
  const errors = [...(ada?.page.errors || []), ...(bea?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

/**
 * Runs axe on the page as it is now. The source goes in through the DevTools
 * protocol, not a <script>, so the production CSP stays as it is.
 */
async function axe(page) {
  // let entry animations (messages, toasts) finish: half-faded text has no contrast
  await sleep(400);
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE_SOURCE);
  return page.evaluate((tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }), TAGS);
}

function serious(results) {
  return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

function describe(violations) {
  return violations.map((v) => `${v.id} (${v.impact}): ${v.help}\n${v.nodes.slice(0, 6).map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`).join('\n')}`).join('\n');
}

/** Checks the page in both colour schemes. */
async function check(page, what) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    const bad = serious(await axe(page));
    assert.deepEqual(bad.map((v) => v.id), [], `${what} (${scheme}):\n${describe(bad)}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

test('the sign-in and register pages', async () => {
  const p = ada.page;
  await p.goto('/login');
  await p.getByRole('heading', { name: 'Welcome back' }).waitFor();
  await check(p, 'sign-in page');
  // with an error shown
  await p.getByLabel('Email or username').fill('nobody');
  await p.getByLabel('Password').fill('wrong password');
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.locator('.form-error:not([hidden])').waitFor();
  await check(p, 'sign-in page with an error');
  await p.goto('/register');
  await p.getByRole('button', { name: 'Create account' }).waitFor();
  await check(p, 'register page');
  await p.goto('/register?invite=an-invite-code');
  await p.getByLabel('Invite code').waitFor();
  await check(p, 'register page with an invite');
});

test('the password reset page, with an error', async () => {
  const p = ada.page;
  await p.goto('/reset?token=not-a-real-token');
  await p.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  await check(p, 'reset page');
  await p.getByLabel('New password', { exact: true }).fill('a new password');
  await p.getByLabel('Repeat the new password').fill('a new password');
  await p.getByRole('button', { name: 'Set new password' }).click();
  await p.locator('.form-error:not([hidden])').waitFor();
  await check(p, 'reset page with an error');
});

test('the chat list, with the selected chat', async () => {
  await register(ada.page, A);
  await register(bea.page, B);
  const beaId = Number(server.query("SELECT id FROM users WHERE username = 'bea'")[0][0]);
  chatId = await ada.page.evaluate(async (id) => {
    const app = window.parley;
    const chat = await app.openDirect(id);
    await app.createGroup('Reading group', [id]);
    for (const content of ['Hello Bea!', 'Are you coming tomorrow? The train leaves at 9:40.']) {
      // eslint-disable-next-line no-await-in-loop
      await app.socket.request('message:send', { chatId: chat.id, clientId: crypto.randomUUID(), kind: 'text', content });
    }
    return chat.id;
  }, beaId);
  const bp = bea.page;
  await bp.locator('.chat-item .badge').first().waitFor();
  await check(bp, 'chat list with unread chats');
  await ada.page.goto('/');
  await ada.page.locator('.me-status.ok').waitFor();
  await check(ada.page, 'chat list');
});

test('the chat view with messages, a reply, a reaction and the search open', async () => {
  const ap = ada.page;
  const bp = bea.page;
  await bp.goto(`/chat/${chatId}`);
  await bp.locator('.msg-row.theirs').first().waitFor();
  // a reply and a reaction, as the client shows them
  const { replied, reacted } = await bp.evaluate(async (id) => {
    const app = window.parley;
    const send = (content, extra = {}) => app.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content, ...extra });
    const last = await send('Yes, see you at the station 🚉');
    const first = app.store(id).sorted().find((m) => m.content === 'Hello Bea!');
    // (a server without replies and reactions refuses them: then plain messages)
    const replied = await send('Hello to you too', { replyToId: first.id }).then(() => true, () => send('Hello to you too').then(() => false));
    const reacted = await app.socket.request('message:react', { messageId: last.id, emoji: '👍', active: true }).then(() => true, () => false);
    return { replied, reacted };
  }, chatId);
  if (!replied || !reacted) console.log(`# the server refused ${replied ? '' : 'the reply '}${reacted ? '' : 'the reaction'}: checked without`);
  await ap.goto(`/chat/${chatId}`);
  await ap.locator('.msg-row', { hasText: 'Hello to you too' }).waitFor();
  await check(ap, 'chat view');

  await ap.getByRole('button', { name: 'Search messages' }).click();
  await ap.getByRole('searchbox', { name: 'Search messages in this chat' }).fill('station');
  await ap.locator('.msg-search-hits .hit').first().waitFor();
  await check(ap, 'chat view with search hits');
  await ap.locator('.msg-search-hits .hit').first().click();
  await ap.locator('.msg-row.jump-target').waitFor();
  await check(ap, 'chat view with a highlighted message');

  // the encryption switch on, with its note in the search
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
  await ap.getByRole('button', { name: 'Search messages' }).click();
  await ap.locator('.msg-search-note:not([hidden])').waitFor();
  await check(ap, 'encrypted chat view with search');
  await ap.keyboard.press('Escape');
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
});

test('the message menu and the reaction picker', async (t) => {
  const ap = ada.page;
  await ap.goto(`/chat/${chatId}`);
  const row = ap.locator('.msg-row', { hasText: 'Yes, see you at the station' });
  await row.waitFor();
  if (!(await row.getByRole('button', { name: 'Message actions' }).count())) {
    t.skip('this client has no message actions yet');
    return;
  }
  await row.hover();
  await row.getByRole('button', { name: 'Message actions' }).click();
  await ap.getByRole('menu').waitFor();
  await check(ap, 'message menu');
  await ap.keyboard.press('Escape');
  await ap.getByRole('menu').waitFor({ state: 'detached' });
  await row.hover();
  await row.getByRole('button', { name: 'React' }).click();
  await ap.getByRole('toolbar', { name: 'Pick a reaction' }).waitFor();
  await check(ap, 'reaction picker');
  await ap.keyboard.press('Escape');
});

test('a group chat, with the sender names', async () => {
  const ap = ada.page;
  const groupId = Number(server.query("SELECT id FROM chats WHERE title = 'Reading group'")[0][0]);
  await bea.page.evaluate((id) => window.parley.socket.request('message:send', { chatId: id, clientId: crypto.randomUUID(), kind: 'text', content: 'Chapter 3 for Friday?' }), groupId);
  await ap.goto(`/chat/${groupId}`);
  await ap.locator('.msg-row.theirs .sender', { hasText: 'bea' }).waitFor();
  await check(ap, 'group chat view');
});

test('a group\'s details as its owner, and its system lines', async () => {
  const ap = ada.page;
  const groupId = Number(server.query("SELECT id FROM chats WHERE title = 'Reading group'")[0][0]);
  await ap.goto(`/chat/${groupId}`);
  await ap.locator('.msg-row').first().waitFor();
  await ap.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  const d = ap.getByRole('dialog');
  await d.getByLabel('Group name').waitFor();
  await d.getByLabel('Add people').fill('be');
  await d.locator('.member', { hasText: 'bea' }).waitFor();
  await check(ap, 'group details (owner)');
  await d.getByLabel('Group name').fill('Reading group, 2nd year');
  await d.getByRole('button', { name: 'Rename' }).click();
  await ap.locator('.chat-title', { hasText: 'Reading group, 2nd year' }).waitFor();
  await ap.keyboard.press('Escape');
  await ap.locator('.msg-row.system .system-text', { hasText: 'renamed the group' }).waitFor();
  await check(ap, 'group chat with a system line');
});

test('a direct chat\'s details with the block button', async () => {
  const ap = ada.page;
  await ap.goto(`/chat/${chatId}`);
  await ap.locator('.msg-row').first().waitFor();
  await ap.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  await ap.getByRole('dialog').getByRole('button', { name: 'Block bea' }).waitFor();
  await check(ap, 'direct chat details');
  await ap.keyboard.press('Escape');
});

test('the account menu and the settings page', async () => {
  const ap = ada.page;
  await ap.goto('/');
  await ap.getByRole('button', { name: 'Account menu' }).click();
  await ap.getByRole('menu', { name: 'Account' }).waitFor();
  await check(ap, 'account menu');
  await ap.getByRole('menuitem', { name: 'Settings' }).click();
  await ap.locator('.session.current').waitFor();
  await ap.getByText('You have not blocked anyone.').waitFor();
  await check(ap, 'settings page');
  // with the password form's error shown
  await ap.getByRole('button', { name: 'Change password' }).click();
  await ap.locator('#settings-password-section .form-error:not([hidden])').waitFor();
  await check(ap, 'settings page with an error');
});

test('the sign-in page after being signed out elsewhere', async () => {
  const { context, page } = await person(browser, server, { name: 'ada-elsewhere' });
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(A.username);
  await page.getByLabel('Password').fill(A.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.evaluate(() => window.parley.sessionExpired('session_revoked'));
  await page.getByText('You were signed out').waitFor();
  await check(page, 'sign-in page with the signed-out notice');
  await context.close();
});

test('the chat list and the chat at 375 px', async () => {
  const { context, page } = await person(browser, server, { width: 375, height: 740, name: 'ada-mobile' });
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(A.username);
  await page.getByLabel('Password').fill(A.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.locator('.chat-item').first().waitFor();
  await check(page, 'chat list at 375 px');
  await page.goto(`/chat/${chatId}`);
  await page.locator('.msg-row').first().waitFor();
  await page.getByRole('button', { name: 'Search messages' }).click();
  await check(page, 'chat view at 375 px with the search open');
  await page.goto('/settings');
  await page.locator('.session.current').waitFor();
  await check(page, 'settings at 375 px');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the settings fit in 375 px (${overflow} px too wide)`);
  await page.getByRole('link', { name: 'Back to chats' }).click();
  await page.locator('.chat-item').first().waitFor();
  // a group's details as its owner
  const groupId = Number(server.query("SELECT id FROM chats WHERE kind = 'group' ORDER BY id LIMIT 1")[0][0]);
  await page.goto(`/chat/${groupId}`);
  await page.locator('.msg-row').first().waitFor();
  await page.getByRole('button', { name: 'Chat details and key fingerprints' }).click();
  await page.getByRole('dialog').getByLabel('Group name').waitFor();
  await check(page, 'group details at 375 px');
  await context.close();
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(ada.page, bea.page), []);
});
