// A 1:1 video call between two browser contexts (fake camera and microphone):
// ringing, accept, media both ways, hang-up, the call line in the history, and a
// declined call.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Parley, launchBrowser, person, register, shot, sleep, cspErrors } from '../lib/harness.js';

let server;
let browser;
let carol;
let dave;

before(async () => {
  server = await new Parley('call').start();
  browser = await launchBrowser();
  carol = await person(browser, server, { name: 'carol' });
  dave = await person(browser, server, { name: 'dave' });
  await register(carol.page, { email: 'carol@example.com', username: 'carol', password: 'carol password 1' });
  await register(dave.page, { email: 'dave@example.com', username: 'dave', password: 'dave password 1' });
  await carol.page.getByLabel('Search people').fill('dave');
  await carol.page.locator('.person', { hasText: 'dave' }).click();
  await carol.page.waitForURL(/\/chat\/\d+$/);
  const box = carol.page.getByRole('textbox', { name: 'Message' });
  await box.fill('Call you in a second?');
  await box.press('Enter');
  await dave.page.locator('.chat-item', { hasText: 'carol' }).click();
  await dave.page.locator('.msg-row.theirs', { hasText: 'Call you in a second?' }).waitFor();
});

after(async () => {
  const errors = [...(carol?.page.errors || []), ...(dave?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

const remoteSize = (page) => page.evaluate(() => {
  const v = document.querySelector('.call-screen .remote-video');
  return v ? { w: v.videoWidth, h: v.videoHeight } : null;
});

test('a video call connects both ways and hangs up', async () => {
  const cp = carol.page;
  const dp = dave.page;
  await cp.getByRole('button', { name: 'Start video call' }).click();
  await cp.locator('.call-screen .call-status', { hasText: /Ringing|Starting/ }).waitFor();
  const dialog = dp.getByRole('dialog', { name: 'carol' });
  await dialog.waitFor({ timeout: 15000 });
  assert.match(await dialog.innerText(), /Incoming video call/);
  await shot(dp, 'call-incoming');
  await dialog.getByRole('button', { name: 'Accept video call' }).click();

  for (const page of [cp, dp]) {
    await page.waitForFunction(() => {
      const v = document.querySelector('.call-screen .remote-video');
      return v && v.videoWidth > 0 && v.videoHeight > 0;
    }, null, { timeout: 30000 });
  }
  const [a, b] = [await remoteSize(cp), await remoteSize(dp)];
  assert.ok(a.w > 0 && b.w > 0, JSON.stringify({ a, b }));
  await cp.locator('.call-screen.is-connected').waitFor();
  await cp.locator('.call-status', { hasText: /^\d+:\d\d$/ }).waitFor({ timeout: 5000 });
  // mute and camera toggles
  const mute = cp.getByRole('button', { name: 'Mute microphone' });
  await mute.click();
  assert.equal(await cp.getByRole('button', { name: 'Unmute microphone' }).getAttribute('aria-pressed'), 'true');
  assert.equal(await cp.evaluate(() => window.parley && document.querySelector('.call-screen') !== null), true);
  await cp.getByRole('button', { name: 'Turn camera off' }).click();
  await cp.getByRole('button', { name: 'Turn camera on' }).click();
  await cp.getByRole('button', { name: 'Unmute microphone' }).click();
  await sleep(1200);
  await shot(cp, 'call');

  await dp.getByRole('button', { name: 'Hang up' }).click();
  await cp.locator('.call-screen .call-status', { hasText: 'Call ended' }).waitFor({ timeout: 10000 });
  await cp.locator('.call-screen').waitFor({ state: 'detached', timeout: 10000 });
  await dp.locator('.call-screen').waitFor({ state: 'detached', timeout: 10000 });
  // the call leaves its line in both histories
  for (const page of [cp, dp]) {
    await page.locator('.msg-row.system .call-text', { hasText: /Call ended · 0:\d\d/ }).waitFor({ timeout: 10000 });
  }
  // and the camera is released
  const live = await cp.evaluate(() => document.querySelectorAll('video').length);
  assert.equal(live, 0);
});

test('a declined call shows as rejected on both sides', async () => {
  const cp = carol.page;
  const dp = dave.page;
  await cp.getByRole('button', { name: 'Start video call' }).click();
  const dialog = dp.getByRole('dialog', { name: 'carol' });
  await dialog.waitFor({ timeout: 15000 });
  await dialog.getByRole('button', { name: 'Decline call' }).click();
  await cp.locator('.call-screen .call-status', { hasText: 'Call declined' }).waitFor({ timeout: 10000 });
  await cp.locator('.call-screen').waitFor({ state: 'detached', timeout: 10000 });
  await cp.locator('.msg-row.system .call-text', { hasText: 'Call rejected' }).waitFor({ timeout: 10000 });
  await dp.locator('.msg-row.system .call-text', { hasText: /Declined video call|Call rejected/ }).waitFor({ timeout: 10000 });
});

test('a caller who hangs up while ringing leaves a missed call', async () => {
  const cp = carol.page;
  const dp = dave.page;
  await cp.getByRole('button', { name: 'Start video call' }).click();
  await dp.getByRole('dialog', { name: 'carol' }).waitFor({ timeout: 15000 });
  await cp.getByRole('button', { name: 'Hang up' }).click();
  await dp.getByRole('dialog', { name: 'carol' }).waitFor({ state: 'detached', timeout: 10000 });
  await dp.locator('.msg-row.system .call-line.missed', { hasText: 'Missed video call' }).waitFor({ timeout: 10000 });
  await cp.locator('.msg-row.system .call-text', { hasText: 'Cancelled video call' }).waitFor({ timeout: 10000 });
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(carol.page, dave.page), []);
  const uncaught = [...carol.page.errors, ...dave.page.errors].filter((e) => !e.includes(' console: '));
  assert.deepEqual(uncaught, [], 'no uncaught exceptions in the pages');
});
