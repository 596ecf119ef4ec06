// Attachments (photos and files) without the DOM of the views: the upload with
// progress and cancel, fetching what the server keeps (every download needs the
// bearer token, so the browser shows and saves `blob:` URLs), and the browser-side
// encryption of an attachment for an encrypted chat (PROTOCOL.md "Encrypted
// attachments": AES-256-GCM with a fresh key and IV per file; the key travels inside
// the message's e2ee envelope).

import { api, getToken, ApiError } from './api.js';
import { b64, unb64 } from './e2ee.js';

const THUMB_PX = 160; // the long side of the thumbnail carried in an encrypted envelope
const THUMB_QUALITY = 0.7;
// What a browser can decode into a canvas, so it can be shown as a photo (encrypted
// uploads only: for plaintext ones the server decides the kind from the bytes).
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif']);

/** 1536 → "1.5 KB": sizes as people read them (1 KB = 1024 bytes). */
export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 10 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, '')} ${units[i]}`;
}

// ---------- upload ----------

export class UploadCancelled extends Error {
  constructor() {
    super('Upload cancelled');
    this.name = 'UploadCancelled';
  }
}

/** A readable sentence for a refused upload (the server's JSON error body, plus what to do). */
function uploadError(status, body, retryAfter) {
  const code = body?.error?.code || `http_${status}`;
  const said = body?.error?.message;
  let text;
  if (status === 0) text = 'Cannot reach the server. Check your connection.';
  else if (code === 'quota_exceeded') text = 'Your storage is full: delete some attachments you sent, then try again.';
  else if (code === 'image_too_large') text = 'This picture is too large to send (too many pixels or frames).';
  else if (code === 'too_large' || status === 413) text = 'This file is too large to send.';
  else if (code === 'unsupported_media_type' || status === 415) text = 'This type of file cannot be sent.';
  else if (code === 'rate_limited' || status === 429) {
    const secs = Number(retryAfter);
    text = `Too many uploads at once. Try again ${secs > 0 ? `in ${secs} s` : 'in a moment'}.`;
  } else if (code === 'storage_full') text = 'The server has no room for this file right now.';
  else if (code === 'unavailable' || status === 503) {
    const secs = Number(retryAfter);
    text = `The server is busy. Try again ${secs > 0 ? `in ${secs} s` : 'in a moment'}.`;
  }
  else if (code === 'forbidden') text = 'You cannot send files to this chat.';
  else text = said || 'The upload failed.';
  // the server's own words say which limit, when it gives them
  if (said && (status === 413 || status === 415) && code !== 'quota_exceeded') {
    text = `${text} (${said.replace(/\b(\d{4,}) bytes\b/g, (_, n) => humanSize(Number(n)))})`;
  }
  const err = new ApiError(status, code, text);
  err.serverMessage = said || null;
  return err;
}

/**
 * Uploads `file` (a Blob; its name is the display name) to `POST /api/media`.
 * `XMLHttpRequest`, not fetch: fetch reports no upload progress. Returns
 * `{promise, abort}`; `promise` resolves with the upload answer
 * `{mediaId, kind, mime, bytes, name, url, width?, height?, thumbnailUrl?}` and
 * rejects with `UploadCancelled` after `abort()` or an `ApiError` with a sentence
 * people can read. `onProgress(fraction)` gets 0..1.
 */
export function uploadMedia(file, { chatId, encrypted = false, name, onProgress } = {}) {
  const xhr = new XMLHttpRequest();
  let cancelled = false;
  const promise = new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('chatId', String(chatId));
    if (encrypted) form.append('encrypted', 'true');
    form.append('file', file, name ?? file.name ?? 'file');
    xhr.open('POST', '/api/media');
    const token = getToken();
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && e.total > 0) onProgress?.(Math.min(1, e.loaded / e.total));
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON: the status says enough */
      }
      if (xhr.status === 201 || xhr.status === 200) {
        if (body && body.mediaId) resolve(body);
        else reject(new ApiError(xhr.status, 'bad_response', 'The server answered the upload oddly.'));
        return;
      }
      reject(uploadError(xhr.status, body, xhr.getResponseHeader('Retry-After')));
    });
    xhr.addEventListener('error', () => reject(cancelled ? new UploadCancelled() : uploadError(0, null)));
    xhr.addEventListener('abort', () => reject(new UploadCancelled()));
    xhr.send(form);
  });
  return {
    promise,
    abort() {
      cancelled = true;
      xhr.abort();
    },
  };
}

// ---------- downloads ----------

const blobs = new Map(); // url -> Promise<Blob>
const objectUrls = new Map(); // url -> Promise<string>
const local = new Map(); // mediaId -> Blob: our own uploads, shown without a download

/** Our own upload: its bubble and the viewer show the file we have, not a download. */
export function rememberLocal(mediaId, blob) {
  if (mediaId != null && blob) local.set(String(mediaId), blob);
}

export function localBlob(mediaId) {
  return mediaId == null ? null : local.get(String(mediaId)) || null;
}

/** The bytes at `url` (an API path), with the bearer token; cached per URL. */
export function fetchBlob(url) {
  if (!blobs.has(url)) {
    const p = api('GET', url, undefined, { raw: true }).then((res) => res.blob());
    p.catch(() => blobs.delete(url));
    blobs.set(url, p);
  }
  return blobs.get(url);
}

/** A `blob:` URL of what `url` serves (thumbnails and photos for `<img>`). */
export function objectUrlOf(url) {
  if (!objectUrls.has(url)) {
    const p = fetchBlob(url).then((b) => URL.createObjectURL(b));
    p.catch(() => objectUrls.delete(url));
    objectUrls.set(url, p);
  }
  return objectUrls.get(url);
}

/** Saves `blob` as `name` through a temporary link (the download the browser shows). */
export function saveBlob(blob, name) {
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name || 'download';
  a.rel = 'noopener';
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
}

// ---------- encryption ----------

/**
 * Encrypts `file` for an encrypted chat: returns `{blob, secret}` where `blob` is
 * AES-256-GCM(key, iv) of the bytes (tag appended) and `secret` the attachment part of
 * the envelope's plaintext `{key, iv, mime, name, width, height, thumbnail?}`.
 */
export async function encryptFile(file) {
  const bytes = await file.arrayBuffer();
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const cipher = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes);
  const raw = await crypto.subtle.exportKey('raw', key);
  const secret = {
    key: b64(raw), iv: b64(iv), mime: file.type || 'application/octet-stream', name: file.name || 'file',
    width: null, height: null,
  };
  const picture = await pictureOf(file);
  if (picture) Object.assign(secret, picture);
  return { blob: new Blob([cipher], { type: 'application/octet-stream' }), secret };
}

/** Whether an encrypted attachment is a photo: the sender could decode it. */
export function isPicture(secret) {
  return !!(secret && IMAGE_TYPES.has(secret.mime) && secret.width > 0 && secret.height > 0);
}

/** `{width, height, thumbnail}` of an image file, or null when it is not one we can draw. */
async function pictureOf(file) {
  if (!IMAGE_TYPES.has(file.type)) return null;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return null; // called an image, but not one: sent as a file
  }
  try {
    const { width, height } = bitmap;
    const scale = Math.min(1, THUMB_PX / Math.max(width, height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff'; // JPEG has no transparency: a transparent PNG goes on white
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return { width, height, thumbnail: canvas.toDataURL('image/jpeg', THUMB_QUALITY) };
  } finally {
    bitmap.close?.();
  }
}

/** The plaintext of an encrypted attachment at `url`, as a Blob of its real type. */
export function decryptedBlob(url, secret) {
  const cacheKey = `${url}#${secret.iv}`;
  if (!blobs.has(cacheKey)) {
    const p = (async () => {
      const cipher = await (await fetchBlob(url)).arrayBuffer();
      const key = await crypto.subtle.importKey('raw', unb64(secret.key), { name: 'AES-GCM' }, false, ['decrypt']);
      const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: unb64(secret.iv) }, key, cipher);
      return new Blob([plain], { type: secret.mime || 'application/octet-stream' });
    })();
    p.catch(() => blobs.delete(cacheKey));
    blobs.set(cacheKey, p);
  }
  return blobs.get(cacheKey);
}

/** A `blob:` URL of a decrypted attachment. */
export function decryptedUrl(url, secret) {
  const cacheKey = `${url}#${secret.iv}`;
  if (!objectUrls.has(cacheKey)) {
    const p = decryptedBlob(url, secret).then((b) => URL.createObjectURL(b));
    p.catch(() => objectUrls.delete(cacheKey));
    objectUrls.set(cacheKey, p);
  }
  return objectUrls.get(cacheKey);
}

/**
 * The plaintext of an encrypted attachment message (`{text, media}`), from the
 * decrypted envelope text. Throws when it is not one.
 */
export function parseSecret(plain) {
  const v = JSON.parse(plain);
  if (!v || typeof v !== 'object' || !v.media || typeof v.media.key !== 'string' || typeof v.media.iv !== 'string') {
    throw new Error('not an attachment');
  }
  const m = v.media;
  return {
    text: typeof v.text === 'string' ? v.text : '',
    media: {
      key: m.key, iv: m.iv, mime: typeof m.mime === 'string' ? m.mime : 'application/octet-stream',
      name: typeof m.name === 'string' && m.name ? m.name : 'file',
      width: Number(m.width) || null, height: Number(m.height) || null,
      // only our own kind of data URL is shown (nothing the sender could point elsewhere)
      thumbnail: typeof m.thumbnail === 'string' && m.thumbnail.startsWith('data:image/jpeg;base64,') ? m.thumbnail : null,
    },
  };
}
