// Makes the README screenshots (docs/screenshots/*.png) from a seeded conversation:
//   cd tests/browser && node screenshots.js
// (install fonts-noto-color-emoji first for colour emoji). Not part of the test run.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Parley, launchBrowser, person, register, repoDir, sleep } from './lib/harness.js';
import { png } from './lib/png.js';

const out = join(repoDir, 'docs', 'screenshots');
mkdirSync(out, { recursive: true });

const people = ['alice', 'bob', 'carol', 'dave', 'erin'];
const server = await new Parley('screenshots').start();
const browser = await launchBrowser();
const ctx = {};
try {
  for (const name of people) {
    ctx[name] = await person(browser, server, { name });
    await register(ctx[name].page, { email: `${name}@example.com`, username: name, password: `${name} password 1` });
  }
  const ids = {};
  for (const name of people) ids[name] = await ctx[name].page.evaluate(() => window.parley.me.id);

  const openDirect = (from, to) => ctx[from].page.evaluate((id) => window.parley.openDirect(id).then((c) => c.id), ids[to]);
  const say = async (from, chatId, text) => {
    await ctx[from].page.evaluate(([c, t]) => window.parley.socket.request('message:send', {
      chatId: c, clientId: crypto.randomUUID(), kind: 'text', content: t,
    }), [chatId, text]);
    await sleep(120);
  };

  const dave = await openDirect('alice', 'dave');
  await say('dave', dave, 'Thanks for the book recommendation!');
  await say('alice', dave, 'Anytime — tell me how you like it 📚');
  const hike = await ctx.alice.page.evaluate((m) => window.parley.createGroup('Weekend hike 🏔️', m).then((c) => c.id), [ids.carol, ids.dave, ids.erin]);
  await say('carol', hike, 'Trailhead at 8?');
  await say('erin', hike, 'I’ll bring coffee ☕');
  const carol = await openDirect('alice', 'carol');
  await say('carol', carol, 'Are we still on for lunch tomorrow?');
  await say('carol', carol, 'I found a great new ramen place 🍜');
  await ctx.carol.context.close();
  const bob = await openDirect('alice', 'bob');

  // Alice and Bob chat in their browsers (receipts, encryption, a voice note, a photo, a call line).
  const ap = ctx.alice.page;
  const bp = ctx.bob.page;
  const type = async (page, text) => {
    const box = page.getByRole('textbox', { name: /message/i });
    await box.fill(text);
    await box.press('Enter');
    await sleep(250);
  };
  await ap.goto(`/chat/${bob}`);
  await bp.goto(`/chat/${bob}`);
  await ap.locator('.me-status.ok').waitFor();
  await bp.locator('.me-status.ok').waitFor();
  await type(ap, 'Hey Bob! Did you get the photos from Saturday?');
  await type(bp, 'Yes! The one at the lake is amazing 😍');
  await type(bp, 'Can you send me the address of the cabin?\nI want to book it for June.');
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
  await type(ap, 'Sure — 14 Birch Lane, code for the key box is 4071 🔑');
  await ap.getByRole('switch', { name: 'End-to-end encryption' }).click();
  const mic = ap.getByRole('button', { name: /Record voice message/ });
  const box = await mic.boundingBox();
  await ap.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await ap.mouse.down();
  await sleep(4200);
  await ap.mouse.up();
  await sleep(1500);
  // a photo with a caption, through the attach button
  const [chooser] = await Promise.all([ap.waitForEvent('filechooser'), ap.getByRole('button', { name: 'Attach file' }).click()]);
  await chooser.setFiles({ name: 'lake.png', mimeType: 'image/png', buffer: png(960, 640, 150) });
  await ap.getByLabel('Caption').fill('The lake on Saturday 🌅');
  await ap.getByRole('group', { name: 'Attachments to send' }).getByRole('button', { name: /^Send/ }).click();
  await bp.locator('.msg-row.theirs .media-image img').last().waitFor();
  await sleep(1200);
  await ap.getByRole('button', { name: 'Start video call' }).click();
  await bp.getByRole('dialog', { name: 'alice' }).waitFor();
  await bp.getByRole('button', { name: 'Accept video call' }).click();
  await ap.locator('.call-screen.is-connected').waitFor({ timeout: 20000 });
  await sleep(3500);
  await ap.screenshot({ path: join(out, 'call.png') });
  await ap.getByRole('button', { name: 'Hang up' }).click();
  await ap.locator('.call-screen').waitFor({ state: 'detached' });
  await type(bp, 'Perfect, thank you! Talk soon 👋');
  await bp.getByRole('textbox', { name: /message/i }).type('Oh, and one more', { delay: 30 });
  await ap.locator('.typing-line.show').waitFor();
  await sleep(600);
  await ap.screenshot({ path: join(out, 'chat.png'), animations: 'disabled' });

  await ap.goto('/');
  await ap.locator('.chat-item').first().waitFor();
  await sleep(800);
  await ap.screenshot({ path: join(out, 'chat-list.png'), animations: 'disabled' });

  // the same browser (it holds Alice's private key) at phone width
  await ap.setViewportSize({ width: 375, height: 760 });
  await ap.goto(`/chat/${bob}`);
  await ap.locator('.msg-row').first().waitFor();
  await sleep(1200);
  await ap.screenshot({ path: join(out, 'chat-mobile.png'), animations: 'disabled' });
  console.log(`screenshots written to ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
