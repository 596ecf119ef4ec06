// Renders the app icons of the web app manifest (static/icons/*.png) from
// static/favicon.svg with chromium, once; the PNGs are committed. Run again after
// changing the favicon:  node tests/browser/render-icons.js
//
//   icon-192.png, icon-512.png    the favicon as it is ("any" purpose)
//   icon-maskable-512.png         full-bleed background, the glyph inside the 80 %
//                                 safe zone, for platforms that crop icons to a shape

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, repoDir } from './lib/harness.js';

const svg = readFileSync(join(repoDir, 'static', 'favicon.svg'), 'utf8');
const out = join(repoDir, 'static', 'icons');

const browser = await launchBrowser();
const page = await browser.newPage({ viewport: { width: 512, height: 512 }, deviceScaleFactor: 1 });
async function render(size, html, name) {
  await page.setViewportSize({ width: size, height: size });
  await page.setContent(`<!doctype html><html><body style="margin:0;background:transparent">${html}</body></html>`);
  const png = await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
  writeFileSync(join(out, name), png);
  console.log(`${name}: ${png.length} bytes`);
}
const img = (size) => svg.replace('<svg ', `<svg width="${size}" height="${size}" style="display:block" `);
await render(192, img(192), 'icon-192.png');
await render(512, img(512), 'icon-512.png');
// maskable: the gradient fills the square, the bubble scaled into the safe zone
const maskable = svg
  .replace('<rect width="64" height="64" rx="16" fill="url(#g)"/>', '<rect width="64" height="64" fill="url(#g)"/><g transform="translate(9.6 9.6) scale(0.7)">')
  .replace('</svg>', '</g></svg>');
await render(512, maskable.replace('<svg ', '<svg width="512" height="512" style="display:block" '), 'icon-maskable-512.png');
await browser.close();
