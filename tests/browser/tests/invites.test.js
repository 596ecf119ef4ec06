// Who may register: an invite-only server says so and refuses a registration
// without a valid invite; an invite link from the admin CLI (`parley admin invite
// create`) fills in the invite and works as many times as it was made for; a closed
// server shows no form. A reset link from the admin CLI sets a new password, once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, login, cspErrors } from '../lib/harness.js';

const ANN = { email: 'ann@example.com', username: 'ann', password: 'correct horse battery' };
const BOB = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };
const CAT = { email: 'cat@example.com', username: 'cat', password: 'staple horse battery' };

let server;
let browser;
let ann;
let bob;
let cat;

before(async () => {
  // invite-only, as `deploy.sh install` sets it up
  server = await new Parley('invites', { env: { PARLEY__AUTH__REGISTRATION: 'invite' } }).start();
  browser = await launchBrowser();
  ann = await person(browser, server, { name: 'ann' });
  bob = await person(browser, server, { name: 'bob' });
  cat = await person(browser, server, { name: 'cat' });
});

after(async () => {
  const errors = [ann, bob, cat].flatMap((x) => x?.page.errors || []);
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

/** `parley admin invite create …`: the `/register?invite=…` path it printed. */
function createInvite(...args) {
  const out = server.admin('invite', 'create', ...args);
  const m = out.match(/\/register\?invite=([A-Za-z0-9_%.~-]+)/);
  assert.ok(m, `the CLI printed an invite link:\n${out}`);
  return `/register?invite=${m[1]}`;
}

test('registration by invitation: without one the page says so, an invite link works once', async () => {
  const p = ann.page;
  await p.goto('/register');
  await p.getByText('Registration on this server is by invitation only').waitFor();
  // trying anyway, without a code: refused
  await p.getByLabel('Email', { exact: true }).fill(ANN.email);
  await p.getByLabel('Username').fill(ANN.username);
  await p.getByLabel('Password').fill(ANN.password);
  await p.getByRole('button', { name: 'Create account' }).click();
  await p.locator('.form-error:not([hidden])').waitFor();
  assert.equal(new URL(p.url()).pathname, '/register');

  const link = createInvite('--uses', '1');
  await register(p, ANN, { path: link });
  // the invite is used up: a second registration with it is refused
  const { context, page } = await person(browser, server, { name: 'late' });
  await page.goto(link);
  assert.equal(await page.getByLabel('Invite code').inputValue(), link.split('=')[1], 'the code is filled in from the link');
  await page.getByLabel('Email', { exact: true }).fill('late@example.com');
  await page.getByLabel('Username').fill('late');
  await page.getByLabel('Password').fill('late but eager');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('This invite is not valid').waitFor();
  await context.close();

  const three = createInvite('--uses', '2');
  await register(bob.page, BOB, { path: three });
  await register(cat.page, CAT, { path: three });
});

test('a reset link from the admin CLI sets a new password', async () => {
  const out = server.admin('user', 'reset-password', 'cat');
  const m = out.match(/\/reset\?token=([A-Za-z0-9_%.~-]+)/);
  assert.ok(m, `the CLI printed a reset link:\n${out}`);
  const { context, page } = await person(browser, server, { name: 'cat-reset' });
  await page.goto(`/reset?token=${m[1]}`);
  await page.getByLabel('New password', { exact: true }).fill('cats have nine lives');
  await page.getByLabel('Repeat the new password').fill('cats have nine live');
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.getByText('The two passwords are not the same.').waitFor();
  await page.getByLabel('Repeat the new password').fill('cats have nine lives');
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.getByText('Your password was changed').waitFor();
  await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  await login(page, { username: 'cat', password: 'cats have nine lives' });
  // the link works once
  await page.goto(`/reset?token=${m[1]}`);
  await page.getByLabel('New password', { exact: true }).fill('another password here');
  await page.getByLabel('Repeat the new password').fill('another password here');
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.locator('.form-error:not([hidden])').waitFor();
  await context.close();
});

test('a closed server shows no registration form', async () => {
  const closed = await new Parley('closed', { env: { PARLEY__AUTH__REGISTRATION: 'closed' } }).start();
  try {
    const { context, page } = await person(browser, closed, { name: 'closed' });
    await page.goto('/register');
    await page.getByText('Registration is closed on this server').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Create account' }).isVisible(), false);
    await context.close();
  } finally {
    await closed.stop();
  }
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(ann.page, bob.page, cat.page), []);
});
