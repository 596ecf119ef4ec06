// The body of a photo or file message: a photo as a thumbnail that opens the viewer,
// a file as its name, size and a download button, the caption under either. In an
// encrypted chat the server holds only ciphertext: the key, the real type and name and
// a small thumbnail come out of the message's envelope, and opening or downloading
// decrypts in the browser.

import { h, icons, toast } from '../ui.js';
import * as e2ee from '../e2ee.js';
import {
  humanSize, objectUrlOf, fetchBlob, saveBlob, localBlob, parseSecret, isPicture, decryptedBlob, decryptedUrl,
} from '../media.js';

const TILE_MAX_W = 280;
const TILE_MAX_H = 320;
const TILE_DEFAULT = [240, 180];
export const CANNOT_DECRYPT_MEDIA = '🔒 Cannot decrypt this attachment on this device';

// Thumbnails load when they come near the screen (each is a fetch with the token).
let observer = null;
function whenNear(el, load) {
  if (!('IntersectionObserver' in window)) {
    load();
    return;
  }
  observer ||= new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      observer.unobserve(e.target);
      e.target.loadThumb?.();
    }
  }, { rootMargin: '600px 0px' });
  el.loadThumb = load;
  observer.observe(el);
}

/** The size a photo takes in the bubble (its aspect ratio, at most TILE_MAX_W × TILE_MAX_H). */
function tileSize(width, height) {
  if (!(width > 0 && height > 0)) return TILE_DEFAULT;
  const scale = Math.min(1, TILE_MAX_W / width, TILE_MAX_H / height);
  return [Math.max(48, Math.round(width * scale)), Math.max(48, Math.round(height * scale))];
}

/**
 * A photo tile: a button named after the photo, holding a lazily loaded `<img>` whose
 * width and height (and the tile's aspect ratio) are right before it loads.
 * `viewer` is what the image viewer needs: `{name, load() → url, save()}`.
 */
function photoTile({ name, width, height, thumb, viewer }) {
  const [w, ht] = tileSize(width, height);
  const img = h('img', { class: 'media-thumb', alt: '', width: String(w), height: String(ht), loading: 'lazy', decoding: 'async' });
  const tile = h('button', {
    type: 'button', class: 'media-image is-loading', 'aria-label': `Open photo ${name}`, title: name,
  }, img);
  tile.style.setProperty('aspect-ratio', `${w} / ${ht}`);
  tile.style.setProperty('width', `${w}px`);
  tile.viewerItem = viewer;
  const show = (src) => {
    img.addEventListener('load', () => tile.classList.remove('is-loading'), { once: true });
    img.addEventListener('error', () => {
      tile.classList.remove('is-loading');
      tile.classList.add('is-error');
    }, { once: true });
    img.src = src;
  };
  if (typeof thumb === 'string') show(thumb);
  else {
    whenNear(tile, () => thumb().then(show, () => {
      tile.classList.remove('is-loading');
      tile.classList.add('is-error');
    }));
  }
  return tile;
}

/** A file: icon, name, size and a Download button. */
function fileCard({ name, bytes, save }) {
  const btn = h('button', {
    type: 'button', class: 'icon-btn file-download', 'aria-label': `Download ${name}`, title: 'Download', html: icons.download,
  });
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    btn.classList.add('busy');
    try {
      await save();
    } catch (e) {
      toast(`Could not download ${name}: ${e.message || e}`, 'error');
    } finally {
      btn.disabled = false;
      btn.classList.remove('busy');
    }
  });
  return h('div', { class: 'file-card' },
    h('span', { class: 'file-icon', html: icons.file }),
    h('span', { class: 'file-text' },
      h('span', { class: 'file-name' }, name),
      bytes != null ? h('span', { class: 'file-size' }, humanSize(bytes)) : null),
    btn);
}

function caption(text) {
  return text ? h('div', { class: 'text caption' }, text) : null;
}

/** A plaintext attachment as the server describes it (`m.media`). */
function plainBody(m, box) {
  const media = m.media || {};
  const name = media.name || (m.kind === 'image' ? 'photo' : 'file');
  const own = localBlob(media.mediaId);
  const full = () => (own ? Promise.resolve(own) : fetchBlob(media.url));
  const save = async () => saveBlob(await full(), name);
  if (m.kind === 'image' && media.url) {
    let ownUrl = null;
    const ownSrc = () => (ownUrl ||= URL.createObjectURL(own));
    box.append(photoTile({
      name, width: media.width, height: media.height,
      thumb: own ? () => Promise.resolve(ownSrc()) : () => objectUrlOf(media.thumbnailUrl || media.url),
      viewer: { name, load: () => (own ? Promise.resolve(ownSrc()) : objectUrlOf(media.url)), save },
    }));
  } else if (media.url) {
    box.append(fileCard({ name, bytes: media.bytes, save }));
  } else {
    box.append(h('div', { class: 'text muted-text' }, 'Attachment unavailable'));
  }
  const c = caption(m.content);
  if (c) box.append(c);
}

/** An encrypted attachment: what it is comes out of the envelope. */
function secretBody(m, box) {
  const wait = h('div', { class: 'text decrypting' }, 'Decrypting…');
  box.append(wait);
  e2ee.decrypt(m).then(parseSecret).then(
    ({ text, media: secret }) => {
      wait.remove();
      const url = m.media?.url;
      const own = localBlob(m.media?.mediaId);
      const blob = () => (own ? Promise.resolve(new Blob([own], { type: secret.mime })) : decryptedBlob(url, secret));
      const save = async () => saveBlob(await blob(), secret.name);
      if (!url && !own) box.append(h('div', { class: 'text muted-text' }, 'Attachment unavailable'));
      else if (m.kind === 'image' && isPicture(secret)) {
        let ownUrl = null;
        const load = () => (own ? Promise.resolve(ownUrl ||= URL.createObjectURL(own)) : decryptedUrl(url, secret));
        box.append(photoTile({
          name: secret.name, width: secret.width, height: secret.height,
          thumb: secret.thumbnail || load, viewer: { name: secret.name, load, save },
        }));
      } else {
        box.append(fileCard({ name: secret.name, bytes: own ? own.size : m.media?.bytes != null ? Math.max(0, m.media.bytes - 16) : null, save }));
      }
      const c = caption(text);
      if (c) box.append(c);
    },
    () => {
      wait.textContent = CANNOT_DECRYPT_MEDIA;
      wait.classList.remove('decrypting');
      wait.classList.add('undecryptable');
    },
  );
}

/** The body of an `image` or `file` message. */
export function mediaBody(m) {
  const box = h('div', { class: 'attachment' });
  if (m.encrypted) secretBody(m, box);
  else plainBody(m, box);
  return box;
}

export function isMediaKind(kind) {
  return kind === 'image' || kind === 'file';
}

/** A short line for an attachment message (quotes, the chat list, the reply bar). */
export function mediaLine(m, plain = null) {
  if (m.encrypted) {
    if (plain === null) return m.kind === 'image' ? '🔒 📷 Photo' : '🔒 📎 File';
    try {
      const { text, media } = parseSecret(plain);
      return m.kind === 'image' ? `📷 ${text || 'Photo'}` : `📎 ${text || media.name}`;
    } catch {
      return '🔒 Encrypted message';
    }
  }
  if (m.kind === 'image') return `📷 ${m.content || 'Photo'}`;
  return `📎 ${m.content || m.media?.name || 'File'}`;
}
