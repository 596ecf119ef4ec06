// Photos and files between two people in two browser contexts: a photo chosen with
// the file chooser (with a caption) arrives as a thumbnail; the image viewer (arrow
// keys, Escape, the focus back); a file with its name and size that downloads as an
// attachment; paste and drag-and-drop into the tray; upload progress and Cancel (a
// throttled upload leaves nothing sent or stored); an encrypted chat (the receiver sees
// the decrypted photo, the server keeps ciphertext); 375 px; axe on the tray and viewer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { Parley, launchBrowser, person, register, shot, sleep, cspErrors } from '../lib/harness.js';
import { png } from '../lib/png.js';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

const A = { email: 'amy@example.com', username: 'amy', password: 'correct horse battery' };
const B = { email: 'bob@example.com', username: 'bob', password: 'battery staple horse' };
const C = { email: 'cat@example.com', username: 'cat', password: 'horse battery correct' };

let server;
let browser;
let amy;
let bob;
let chatPath;
let chatId;

// ---------- helpers ----------

const box = (page) => page.getByRole('textbox', { name: 'Message' });
const tray = (page) => page.getByRole('group', { name: 'Attachments to send' });
const trayItem = (page, name) => tray(page).locator('.tray-item', { has: page.locator('.tray-name', { hasText: name }) });

async function attach(page, files, { keyboard = false } = {}) {
  const button = page.getByRole('button', { name: 'Attach file' });
  const [chooser] = await Promise.all([
    page.waitForEvent('filechooser'),
    keyboard ? button.focus().then(() => page.keyboard.press('Enter')) : button.click(),
  ]);
  assert.ok(chooser.isMultiple(), 'the file input takes several files');
  await chooser.setFiles(files);
  await tray(page).waitFor();
}

/** Sends what is in the tray and waits until the server has stored the last message. */
async function sendTray(page, caption, { keyboard = false } = {}) {
  if (caption !== undefined) await page.getByLabel('Caption').fill(caption);
  const before = await page.locator('.msg-row.own').count();
  const files = await tray(page).locator('.tray-item').count();
  if (keyboard) await page.getByLabel('Caption').press('Enter');
  else await tray(page).getByRole('button', { name: /^Send/ }).click();
  const error = page.locator('.tray-error:not([hidden]), .send-error:not([hidden])');
  await Promise.race([
    page.waitForFunction((n) => {
      const own = [...document.querySelectorAll('.msg-row.own')];
      return own.length >= n && own.every((r) => r.dataset.id);
    }, before + files, { timeout: 30000 }),
    error.first().waitFor({ timeout: 30000 }).then(async () => {
      throw new Error(`not sent: ${await error.first().innerText()}`);
    }),
  ]);
  await tray(page).waitFor({ state: 'hidden' });
}

/** GET with the page's bearer token, from inside the page: `{status, headers, bytes}`. */
function apiGet(page, url) {
  return page.evaluate(async (u) => {
    const token = localStorage.getItem('parley:token');
    const res = await fetch(u, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    const bytes = [...new Uint8Array(await res.arrayBuffer())];
    return { status: res.status, headers: Object.fromEntries(res.headers.entries()), bytes };
  }, url);
}

async function usage(page) {
  const res = await apiGet(page, '/api/media/usage');
  assert.equal(res.status, 200);
  return JSON.parse(Buffer.from(res.bytes).toString('utf8'));
}

async function axe(page) {
  await sleep(400); // entry animations: half-faded text has no contrast
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE_SOURCE);
  return page.evaluate((tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }), TAGS);
}

async function checkAxe(page, what) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    const bad = (await axe(page)).violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    const text = bad.map((v) => `${v.id}: ${v.help}\n${v.nodes.slice(0, 5).map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`).join('\n')}`).join('\n');
    assert.deepEqual(bad.map((v) => v.id), [], `${what} (${scheme}):\n${text}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

async function signIn(page, who) {
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.locator('.me-status.ok').waitFor({ timeout: 15000 });
}

const SUNSET = png(800, 600, 40);
const FOREST = png(480, 640, 200);
const SECRET = png(640, 400, 120);

// A smaller upload limit than the default, so a refused upload is quick to make, and
// a known upload rate (amy's uploads in this file stay well under it).
const MEDIA_MAX_BYTES = 8 * 1024 * 1024;
const UPLOADS_PER_MIN = 12;
class SmallUploads extends Parley {
  env() {
    return {
      ...super.env(),
      PARLEY__LIMITS__MEDIA_MAX_BYTES: String(MEDIA_MAX_BYTES),
      PARLEY__LIMITS__UPLOADS_PER_MIN: String(UPLOADS_PER_MIN),
    };
  }
}

before(async () => {
  server = await new SmallUploads('attachments').start();
  browser = await launchBrowser();
  amy = await person(browser, server, { name: 'amy' });
  bob = await person(browser, server, { name: 'bob' });
});

after(async () => {
  const errors = [...(amy?.page.errors || []), ...(bob?.page.errors || [])];
  if (errors.length) console.log(`# browser errors:\n${errors.map((e) => `#   ${e}`).join('\n')}`);
  await browser?.close();
  await server?.stop();
});

test('two people open a chat', async () => {
  const ap = amy.page;
  const bp = bob.page;
  await register(ap, A);
  await register(bp, B);
  await ap.getByLabel('Search people').fill('bo');
  await ap.locator('.person', { hasText: 'bob' }).click();
  await ap.waitForURL(/\/chat\/\d+$/);
  chatPath = new URL(ap.url()).pathname;
  chatId = Number(chatPath.split('/').pop());
  await bp.goto(chatPath);
  await bp.locator('.me-status.ok').waitFor();
  await box(bp).waitFor();
});

test('a photo chosen with the file chooser arrives with its caption as a thumbnail', async () => {
  const ap = amy.page;
  const bp = bob.page;
  await attach(ap, { name: 'sunset.png', mimeType: 'image/png', buffer: SUNSET }, { keyboard: true });
  const t = tray(ap);
  await trayItem(ap, 'sunset.png').waitFor();
  assert.equal(await t.locator('.tray-thumb').count(), 1, 'a preview of the photo');
  assert.ok(await ap.evaluate(() => document.activeElement?.classList.contains('tray-caption')), 'the caption field has the focus');
  await shot(ap, 'attach-tray');
  await sendTray(ap, 'Sunset at the lake', { keyboard: true }); // Enter in the caption sends
  assert.equal(await ap.evaluate(() => document.activeElement?.id), 'composer-input', 'the focus is back in the composer');

  const row = bp.locator('.msg-row.theirs').filter({ has: bp.locator('.media-image') }).last();
  await row.locator('.caption', { hasText: 'Sunset at the lake' }).waitFor({ timeout: 15000 });
  const img = row.locator('.media-image img');
  await bp.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 15000 });
  const info = await img.evaluate((el) => ({
    w: el.naturalWidth, h: el.naturalHeight, src: el.src, lazy: el.getAttribute('loading'),
    attrW: Number(el.getAttribute('width')), attrH: Number(el.getAttribute('height')),
  }));
  assert.ok(info.w > 0 && info.w <= 320 && info.h <= 320, `a thumbnail of at most 320 px (${info.w}×${info.h})`);
  assert.equal(info.lazy, 'lazy');
  assert.ok(info.src.startsWith('blob:'), 'fetched with the token, shown from a blob: URL');
  assert.ok(Math.abs(info.attrW / info.attrH - 800 / 600) < 0.02, `width and height keep the aspect ratio (${info.attrW}×${info.attrH})`);
  // the own bubble shows the photo too
  await ap.locator('.msg-row.own .media-image img').last().waitFor();
  await shot(bp, 'attach-photo-received');
});

test('the viewer moves between the chat\'s photos with the arrow keys; Escape closes it and gives the focus back', async () => {
  const ap = amy.page;
  const bp = bob.page;
  await attach(ap, { name: 'forest.png', mimeType: 'image/png', buffer: FOREST });
  await sendTray(ap);
  await bp.getByRole('button', { name: 'Open photo forest.png' }).waitFor({ timeout: 15000 });

  const first = bp.getByRole('button', { name: 'Open photo sunset.png' });
  await first.focus();
  await bp.keyboard.press('Enter');
  const dialog = bp.getByRole('dialog', { name: 'sunset.png' });
  await dialog.waitFor();
  assert.equal(await dialog.getAttribute('aria-modal'), 'true');
  const full = dialog.locator('.viewer-img');
  await bp.waitForFunction((el) => el.complete && el.naturalWidth === 800, await full.elementHandle(), { timeout: 15000 });
  assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'the focus is in the viewer');
  await dialog.getByRole('button', { name: 'Download' }).waitFor();
  await shot(bp, 'attach-viewer');
  await checkAxe(bp, 'image viewer');

  await bp.keyboard.press('ArrowRight');
  await bp.getByRole('dialog', { name: 'forest.png' }).waitFor();
  assert.match(await bp.locator('.viewer-count').innerText(), /Photo 2 of 2/);
  await bp.waitForFunction(() => document.querySelector('.viewer-img')?.naturalWidth === 480, null, { timeout: 15000 });
  await bp.keyboard.press('ArrowLeft');
  await bp.getByRole('dialog', { name: 'sunset.png' }).waitFor();
  await bp.keyboard.press('ArrowRight');
  await bp.getByRole('dialog', { name: 'forest.png' }).waitFor();

  // Download saves the original under its name
  const [download] = await Promise.all([bp.waitForEvent('download'), bp.getByRole('button', { name: 'Download' }).click()]);
  assert.equal(download.suggestedFilename(), 'forest.png');

  await bp.keyboard.press('Escape');
  await bp.locator('dialog.viewer').waitFor({ state: 'detached' });
  assert.equal(await bp.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Open photo sunset.png', 'the focus is back on the photo that opened it');
});

test('a file shows its name and size and downloads as an attachment', async () => {
  const ap = amy.page;
  const bp = bob.page;
  const html = Buffer.from('<!doctype html><script>document.title = "pwned"</script><p>notes</p>\n');
  await attach(ap, { name: 'notes.html', mimeType: 'text/html', buffer: html });
  assert.equal(await tray(ap).locator('.tray-thumb').count(), 0, 'no photo preview for a file');
  await tray(ap).getByText(`${html.length} B`).waitFor();
  await sendTray(ap, 'The meeting notes');

  const card = bp.locator('.msg-row.theirs .file-card').last();
  await card.locator('.file-name', { hasText: 'notes.html' }).waitFor({ timeout: 15000 });
  assert.equal(await card.locator('.file-size').innerText(), `${html.length} B`);
  await bp.locator('.msg-row.theirs .caption', { hasText: 'The meeting notes' }).waitFor();
  const [download, response] = await Promise.all([
    bp.waitForEvent('download'),
    bp.waitForResponse((r) => /\/api\/media\/\d+$/.test(new URL(r.url()).pathname)),
    card.getByRole('button', { name: 'Download notes.html' }).click(),
  ]);
  const headers = response.headers();
  assert.match(headers['content-disposition'] || '', /^attachment;/, 'the server answers it as an attachment');
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.notEqual(headers['content-type'], 'text/html');
  assert.equal(download.suggestedFilename(), 'notes.html');
  const saved = readFileSync(await download.path());
  assert.deepEqual(saved, html, 'the downloaded bytes are the file');

  // the message menu has Download too
  const row = bp.locator('.msg-row.theirs').filter({ has: bp.locator('.file-name', { hasText: 'notes.html' }) }).last();
  await row.hover();
  await row.getByRole('button', { name: 'Message actions' }).click();
  const [again] = await Promise.all([
    bp.waitForEvent('download'),
    bp.getByRole('menu', { name: 'Message actions' }).getByRole('menuitem', { name: 'Download' }).click(),
  ]);
  assert.equal(again.suggestedFilename(), 'notes.html');
});

test('deleting an attachment for everyone removes it on both sides and on the server', async () => {
  const ap = amy.page;
  const bp = bob.page;
  // two files in one go: two messages, the caption with the first
  await attach(ap, [
    { name: 'draft.txt', mimeType: 'text/plain', buffer: Buffer.from('a draft to take back\n') },
    { name: 'second.txt', mimeType: 'text/plain', buffer: Buffer.from('and another one\n') },
  ]);
  assert.equal(await tray(ap).getByRole('button', { name: /^Send/ }).innerText(), 'Send 2 files');
  await sendTray(ap, 'Two drafts');
  const second = bp.locator('.msg-row.theirs').filter({ has: bp.locator('.file-name', { hasText: 'second.txt' }) });
  await second.waitFor({ timeout: 15000 });
  assert.equal(await second.locator('.caption').count(), 0, 'the caption goes with the first file only');
  await bp.locator('.msg-row.theirs').filter({ has: bp.locator('.file-name', { hasText: 'draft.txt' }) }).locator('.caption', { hasText: 'Two drafts' }).waitFor();
  const id = await ap.locator('.msg-row.own').filter({ has: ap.locator('.file-name', { hasText: 'draft.txt' }) }).getAttribute('data-id');
  const own = ap.locator(`.msg-row[data-id="${id}"]`); // by id: once deleted it has no file name
  const theirs = bp.locator(`.msg-row[data-id="${id}"]`);
  await theirs.locator('.file-name', { hasText: 'draft.txt' }).waitFor({ timeout: 15000 });
  const url = await bp.evaluate((mid) => window.parley.store(Number(mid.chat)).byId(mid.id)?.media?.url, { chat: chatId, id: Number(id) });
  assert.equal((await apiGet(bp, url)).status, 200);
  const used = (await usage(ap)).storageUsedBytes;

  await own.hover();
  await own.getByRole('button', { name: 'Message actions' }).click();
  await ap.getByRole('menuitem', { name: 'Delete for everyone' }).click();
  await ap.getByRole('dialog', { name: 'Please confirm' }).getByRole('button', { name: 'Delete' }).click();
  await own.locator('.bubble.deleted').waitFor();
  await theirs.locator('.bubble.deleted').waitFor({ timeout: 15000 });
  assert.equal(await theirs.locator('.file-card').count(), 0, 'the file is gone from the bubble');
  assert.equal((await apiGet(bp, url)).status, 403, 'the file is gone from the server');
  assert.ok((await usage(ap)).storageUsedBytes < used, 'its bytes are given back');
});

test('paste and drag-and-drop add files to the tray; remove and Escape empty it', async () => {
  const ap = amy.page;
  await box(ap).focus();
  await ap.evaluate((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }));
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
    document.getElementById('composer-input').dispatchEvent(ev);
  }, png(24, 24, 90).toString('base64'));
  await trayItem(ap, 'pasted.png').waitFor();
  assert.equal(await box(ap).inputValue(), '', 'nothing pasted into the text');

  const target = ap.locator('.messages');
  const dt = await ap.evaluateHandle(() => {
    const d = new DataTransfer();
    d.items.add(new File(['some text\n'], 'dropped.txt', { type: 'text/plain' }));
    return d;
  });
  await target.dispatchEvent('dragenter', { dataTransfer: dt });
  await target.dispatchEvent('dragover', { dataTransfer: dt });
  await ap.locator('.chat.dragging .drop-target').waitFor();
  assert.ok(await ap.locator('.drop-target').isVisible(), 'a drop target shows while dragging');
  await shot(ap, 'attach-drop');
  await target.dispatchEvent('drop', { dataTransfer: dt });
  await trayItem(ap, 'dropped.txt').waitFor();
  assert.ok(!(await ap.locator('.chat.dragging').count()), 'the drop target is gone after the drop');
  assert.equal(await tray(ap).locator('.tray-item').count(), 2);
  await checkAxe(ap, 'attachment tray');

  await tray(ap).getByRole('button', { name: 'Remove dropped.txt' }).click();
  assert.equal(await tray(ap).locator('.tray-item').count(), 1);
  await ap.getByLabel('Caption').focus();
  await ap.keyboard.press('Escape');
  await tray(ap).waitFor({ state: 'hidden' });
  assert.equal(await ap.evaluate(() => document.activeElement?.id), 'composer-input', 'the focus is back in the composer');
});

test('a file over the size limit is refused in words, and nothing is sent', async () => {
  const ap = amy.page;
  const bp = bob.page;
  const rowsBefore = await bp.locator('.msg-row').count();
  await attach(ap, { name: 'huge.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(MEDIA_MAX_BYTES + 1024 * 1024, 7) });
  await tray(ap).getByRole('button', { name: /^Send/ }).click();
  const alert = tray(ap).getByRole('alert');
  await alert.filter({ hasText: /too large/ }).waitFor({ timeout: 20000 });
  const text = await alert.innerText();
  assert.match(text, /This file is too large to send/, text);
  assert.doesNotMatch(text, /\{|"code"|http_/, 'words, not the raw error');
  await trayItem(ap, 'huge.bin').waitFor(); // still there, to remove
  await tray(ap).getByRole('button', { name: 'Discard' }).click();
  await tray(ap).waitFor({ state: 'hidden' });
  await sleep(300);
  assert.equal(await bp.locator('.msg-row').count(), rowsBefore, 'no message arrived');
});

test('a slow upload shows its progress; Cancel sends nothing and stores nothing', async () => {
  const ap = amy.page;
  const bp = bob.page;
  const before = await usage(ap);
  const rowsBefore = await bp.locator('.msg-row').count();
  const cdp = await amy.context.newCDPSession(ap);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 256 * 1024,
  });
  try {
    await attach(ap, { name: 'big.bin', mimeType: 'application/octet-stream', buffer: randomBytes(6 * 1024 * 1024) });
    await tray(ap).getByRole('button', { name: /^Send/ }).click();
    const bar = ap.getByRole('progressbar', { name: 'Uploading big.bin' });
    await bar.waitFor();
    await ap.waitForFunction(() => Number(document.querySelector('.tray-bar')?.getAttribute('aria-valuenow')) >= 2, null, { timeout: 20000 });
    const a = Number(await bar.getAttribute('aria-valuenow'));
    await sleep(1200);
    const b = Number(await bar.getAttribute('aria-valuenow'));
    assert.ok(b > a && b < 100, `the progress moves (${a}% → ${b}%)`);
    await shot(ap, 'attach-progress');
    await checkAxe(ap, 'attachment tray while uploading');
    await ap.getByRole('button', { name: 'Cancel upload' }).click();
    await bar.waitFor({ state: 'hidden' });
    await trayItem(ap, 'big.bin').waitFor(); // still there, to send again or discard
  } finally {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  }
  // nothing stored: the quota is as before once the server has seen the abort
  let after = await usage(ap);
  for (let i = 0; i < 50 && after.storageUsedBytes !== before.storageUsedBytes; i++) {
    await sleep(200);
    after = await usage(ap);
  }
  assert.equal(after.storageUsedBytes, before.storageUsedBytes, 'the cancelled upload is not counted');
  assert.equal(Number(server.query("SELECT COUNT(*) FROM media_files WHERE name = 'big.bin'")[0][0]), 0, 'no row kept');
  await sleep(500);
  assert.equal(await bp.locator('.msg-row').count(), rowsBefore, 'no message arrived');
  assert.equal(await ap.locator('.msg-row.own .file-name', { hasText: 'big.bin' }).count(), 0, 'no message shown');
  await tray(ap).getByRole('button', { name: 'Discard' }).click();
  await tray(ap).waitFor({ state: 'hidden' });
});

test('in an encrypted chat the photo is encrypted in the browser and decrypted by the receiver', async () => {
  const ap = amy.page;
  const bp = bob.page;
  const lock = ap.getByRole('switch', { name: 'End-to-end encryption' });
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'true');
  await attach(ap, { name: 'secret.png', mimeType: 'image/png', buffer: SECRET });
  await tray(ap).getByText(/encrypted in this browser/).waitFor();
  await sendTray(ap, 'Only for you');

  const row = bp.locator('.msg-row.theirs').filter({ has: bp.locator('.caption', { hasText: 'Only for you' }) });
  await row.waitFor({ timeout: 15000 });
  await row.locator('.meta-lock').waitFor();
  const tile = row.getByRole('button', { name: 'Open photo secret.png' });
  const thumb = tile.locator('img');
  await bp.waitForFunction((el) => el.complete && el.naturalWidth > 0, await thumb.elementHandle(), { timeout: 15000 });
  const t = await thumb.evaluate((el) => ({ src: el.src.slice(0, 30), w: el.naturalWidth, h: el.naturalHeight }));
  assert.ok(t.src.startsWith('data:image/jpeg;base64,'), 'the thumbnail comes from the envelope');
  assert.ok(t.w <= 160 && t.h <= 160, `a small thumbnail (${t.w}×${t.h})`);

  // the chat list shows the caption (decrypted), not the envelope's JSON
  const preview = bp.locator('.chat-item .preview').first();
  await preview.filter({ hasText: 'Only for you' }).waitFor();
  assert.doesNotMatch(await preview.innerText(), /[{}]|"key"/);

  // the full photo, decrypted in the browser
  await tile.click();
  const dialog = bp.getByRole('dialog', { name: 'secret.png' });
  await dialog.waitFor();
  await bp.waitForFunction(() => document.querySelector('.viewer-img')?.naturalWidth === 640, null, { timeout: 15000 });
  await bp.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });

  // what the server keeps is ciphertext: not the PNG, 16 bytes longer (the GCM tag)
  const stored = await bp.evaluate((id) => {
    const m = window.parley.store(id).sorted().filter((x) => x.encrypted && x.kind === 'image').pop();
    return { url: m?.media?.url, content: m?.content, kind: m?.media?.kind, mime: m?.media?.mime, name: m?.media?.name };
  }, chatId);
  assert.ok(stored.url, 'the message carries the media url');
  assert.equal(stored.content, '', 'no caption in plaintext');
  assert.equal(stored.kind, 'file');
  assert.equal(stored.mime, 'application/octet-stream');
  assert.equal(stored.name, 'encrypted', 'the real name is only in the envelope');
  const res = await apiGet(bp, stored.url);
  assert.equal(res.status, 200);
  const bytes = Buffer.from(res.bytes);
  assert.equal(bytes.length, SECRET.length + 16);
  assert.notDeepEqual(bytes.subarray(0, 8), SECRET.subarray(0, 8), 'not the PNG signature');
  assert.equal(bytes.indexOf(SECRET.subarray(16, 48)), -1, 'no plaintext run of the PNG');
  await shot(bp, 'attach-encrypted');

  // a file that is not a photo: its real name and size from the envelope, decrypted on download
  const plan = Buffer.from('meet at the old mill, 9 pm\n');
  await attach(ap, { name: 'plan.txt', mimeType: 'text/plain', buffer: plan });
  await sendTray(ap);
  const card = bp.locator('.msg-row.theirs .file-card').filter({ has: bp.locator('.file-name', { hasText: 'plan.txt' }) });
  await card.waitFor({ timeout: 15000 });
  assert.equal(await card.locator('.file-size').innerText(), `${plan.length} B`);
  const [download] = await Promise.all([bp.waitForEvent('download'), card.getByRole('button', { name: 'Download plan.txt' }).click()]);
  assert.equal(download.suggestedFilename(), 'plan.txt');
  assert.deepEqual(readFileSync(await download.path()), plan, 'decrypted in the browser');
  const kinds = await bp.evaluate((id) => {
    const m = window.parley.store(id).sorted().filter((x) => x.encrypted).pop();
    return { kind: m.kind, name: m.media?.name };
  }, chatId);
  assert.deepEqual(kinds, { kind: 'file', name: 'encrypted' });
  await lock.click();
  assert.equal(await lock.getAttribute('aria-checked'), 'false');
});

test('at 375 px the photos, the tray and the viewer fit the screen', async () => {
  const { context, page } = await person(browser, server, { width: 375, height: 740, name: 'bob-mobile' });
  try {
    await signIn(page, B);
    await page.goto(chatPath);
    await page.getByRole('button', { name: 'Open photo forest.png' }).waitFor({ timeout: 15000 });
    await sleep(500);
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok((await overflow()) <= 0, 'no horizontal overflow with photos');
    const tileBox = await page.getByRole('button', { name: 'Open photo sunset.png' }).boundingBox();
    assert.ok(tileBox.x >= 0 && tileBox.x + tileBox.width <= 375, `the photo fits (${JSON.stringify(tileBox)})`);

    await attach(page, [
      { name: 'a-rather-long-file-name-for-a-small-screen.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n') },
      { name: 'small.png', mimeType: 'image/png', buffer: png(40, 30) },
    ]);
    assert.ok((await overflow()) <= 0, 'no horizontal overflow with the tray open');
    const tb = await tray(page).boundingBox();
    assert.ok(tb.x >= 0 && tb.x + tb.width <= 375, `the tray fits (${JSON.stringify(tb)})`);
    await shot(page, 'attach-tray-mobile');
    await checkAxe(page, 'attachment tray at 375 px');
    await page.keyboard.press('Escape');
    await tray(page).waitFor({ state: 'hidden' });

    await page.getByRole('button', { name: 'Open photo sunset.png' }).click();
    const dialog = page.getByRole('dialog', { name: 'sunset.png' });
    await dialog.waitFor();
    await page.waitForFunction(() => document.querySelector('.viewer-img')?.naturalWidth > 0, null, { timeout: 15000 });
    for (const el of [dialog, dialog.locator('.viewer-img'), dialog.getByRole('button', { name: 'Download' }), dialog.getByRole('button', { name: 'Close viewer' })]) {
      const b = await el.boundingBox();
      assert.ok(b.x >= 0 && b.x + b.width <= 375 && b.y >= 0 && b.y + b.height <= 740, `fits the screen (${JSON.stringify(b)})`);
    }
    await shot(page, 'attach-viewer-mobile');
    await checkAxe(page, 'image viewer at 375 px');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    assert.deepEqual(page.errors, []);
  } finally {
    await context.close();
  }
});

test('too many uploads in a minute: the refusal says when to try again', async () => {
  const { context, page } = await person(browser, server, { name: 'cat' });
  try {
    await register(page, C);
    const amyId = Number(server.query("SELECT id FROM users WHERE username = 'amy'")[0][0]);
    const catChat = await page.evaluate((id) => window.parley.openDirect(id).then((c) => c.id), amyId);
    // the minute's uploads, straight to the API
    const statuses = await page.evaluate(async ({ chat, n }) => {
      const token = localStorage.getItem('parley:token');
      const out = [];
      for (let i = 0; i < n; i++) {
        const form = new FormData();
        form.append('chatId', String(chat));
        form.append('file', new File([`note ${i}\n`], `note-${i}.txt`, { type: 'text/plain' }));
        const res = await fetch('/api/media', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: form });
        out.push(res.status);
      }
      return out;
    }, { chat: catChat, n: UPLOADS_PER_MIN });
    assert.deepEqual(statuses, Array(UPLOADS_PER_MIN).fill(201));
    await page.goto(`/chat/${catChat}`);
    await box(page).waitFor();
    await attach(page, { name: 'one-too-many.txt', mimeType: 'text/plain', buffer: Buffer.from('one more\n') });
    await tray(page).getByRole('button', { name: /^Send/ }).click();
    const alert = tray(page).getByRole('alert');
    await alert.filter({ hasText: /Too many uploads/ }).waitFor({ timeout: 15000 });
    assert.match(await alert.innerText(), /^Too many uploads at once\. Try again in \d+ s\.$/);
    await trayItem(page, 'one-too-many.txt').waitFor(); // kept, to send again later
    assert.equal(await page.locator('.msg-row.own').count(), 0, 'nothing sent');
  } finally {
    await context.close();
  }
});

test('nothing broke the production Content-Security-Policy', () => {
  assert.deepEqual(cspErrors(amy.page, bob.page), []);
  const uncaught = [...amy.page.errors, ...bob.page.errors].filter((e) => !e.includes(' console: '));
  assert.deepEqual(uncaught, [], 'no uncaught exceptions in the pages');
});
