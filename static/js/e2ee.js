// End-to-end encryption (PROTOCOL.md "End-to-end encryption envelope").
// One RSA-OAEP-2048/SHA-256 key pair per user and browser, made by WebCrypto; the
// private key is non-extractable and lives in IndexedDB. Each message gets a fresh
// AES-256-GCM key that is wrapped for every member, the sender included.

import { get, post, ApiError } from './api.js';

const DB_NAME = 'parley-e2ee';
const STORE = 'keys';
export const ALG = 'RSA-OAEP-256+A256GCM';
const RSA = { name: 'RSA-OAEP', hash: 'SHA-256' };
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------- encoding helpers ----------

export function b64(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}

export function unb64(text) {
  const s = atob(text);
  const u8 = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
  return u8;
}

function derToPem(der) {
  const body = b64(der).match(/.{1,64}/g).join('\n');
  return `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`;
}

function pemToDer(pem) {
  return unb64(pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, ''));
}

export async function fingerprintOf(der) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', der));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function aadFor(chatId, senderId, clientId) {
  return enc.encode(`parley/e2ee/v1|${chatId}|${senderId}|${clientId}`);
}

// ---------- IndexedDB ----------

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idb(mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// ---------- state ----------

let me = null; // { userId, privateKey, publicKey, pem, fingerprint }
let ready = null;
const keyCache = new Map(); // userId -> Promise<{key, fingerprint, pem} | null>
const plainCache = new Map(); // message id / client key -> Promise<string>
const listeners = new Set();

export function onKeyWarning(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(userId) {
  for (const fn of listeners) fn(userId);
}

function storageKey(kind) {
  return `parley:${kind}:${me?.userId ?? 'anon'}`;
}

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || '{}') || {};
  } catch {
    return {};
  }
}

export function knownFingerprints() {
  return readJson(storageKey('known-fps'));
}

export function keyWarnings() {
  return readJson(storageKey('key-warnings'));
}

function remember(userId, fingerprint) {
  const known = knownFingerprints();
  const before = known[userId];
  if (before === fingerprint) return;
  if (before && before !== fingerprint) {
    const warnings = keyWarnings();
    warnings[userId] = { previous: before, current: fingerprint, at: new Date().toISOString() };
    localStorage.setItem(storageKey('key-warnings'), JSON.stringify(warnings));
  }
  known[userId] = fingerprint;
  localStorage.setItem(storageKey('known-fps'), JSON.stringify(known));
  if (before) emit(String(userId));
}

/** The user has seen the new key (e.g. compared fingerprints): clear the warning. */
export function acknowledgeKey(userId) {
  const warnings = keyWarnings();
  delete warnings[userId];
  localStorage.setItem(storageKey('key-warnings'), JSON.stringify(warnings));
  emit(String(userId));
}

/**
 * Loads this browser's key pair for `user` (or makes one) and makes sure the server
 * has its public half. Safe to call repeatedly; work happens once.
 */
export function init(user) {
  if (me && me.userId === user.id && ready) return ready;
  me = { userId: user.id };
  keyCache.clear();
  plainCache.clear();
  ready = (async () => {
    if (!crypto?.subtle || !window.indexedDB) throw new Error('This browser has no WebCrypto / IndexedDB');
    let pair = await idb('readonly', (s) => s.get(`user:${user.id}`)).catch(() => null);
    if (!pair) {
      const generated = await crypto.subtle.generateKey(
        { ...RSA, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
        false, // the private key never leaves WebCrypto; the public one is always exportable
        ['encrypt', 'decrypt'],
      );
      const der = new Uint8Array(await crypto.subtle.exportKey('spki', generated.publicKey));
      pair = {
        privateKey: generated.privateKey,
        publicKey: generated.publicKey,
        pem: derToPem(der),
        fingerprint: await fingerprintOf(der),
        createdAt: new Date().toISOString(),
      };
      await idb('readwrite', (s) => s.put(pair, `user:${user.id}`));
    }
    Object.assign(me, pair);
    // Upload when the server has none or a different one (e.g. another browser's).
    let server = null;
    try {
      server = await get(`/api/encryption/public-key/${user.id}`);
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 0)) throw e;
    }
    if (!server || server.fingerprint !== me.fingerprint) {
      await post('/api/encryption/public-key', { publicKey: me.pem });
    }
    keyCache.set(String(user.id), Promise.resolve({ key: me.publicKey, fingerprint: me.fingerprint, pem: me.pem }));
    return me;
  })();
  ready.catch(() => {
    ready = null;
  });
  return ready;
}

export function myFingerprint() {
  return me?.fingerprint ?? null;
}

export function reset() {
  me = null;
  ready = null;
  keyCache.clear();
  plainCache.clear();
}

/** A member's public key: `{key, fingerprint, pem}`, or null when they have none. */
export function publicKeyOf(userId, { refresh = false } = {}) {
  const id = String(userId);
  if (!refresh && keyCache.has(id)) return keyCache.get(id);
  const p = (async () => {
    let res;
    try {
      res = await get(`/api/encryption/public-key/${id}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
    const der = pemToDer(res.publicKey);
    const fingerprint = await fingerprintOf(der);
    const key = await crypto.subtle.importKey('spki', der, RSA, false, ['encrypt']);
    if (String(me?.userId) !== id) remember(id, fingerprint);
    return { key, fingerprint, pem: res.publicKey };
  })();
  keyCache.set(id, p);
  p.catch(() => keyCache.delete(id));
  return p;
}

/** `user:key-changed`: forget the cached key and compare the new fingerprint. */
export function keyChanged(userId, fingerprint) {
  keyCache.delete(String(userId));
  if (fingerprint && String(userId) !== String(me?.userId)) remember(String(userId), fingerprint);
}

export class MissingKeyError extends Error {
  constructor(users) {
    super('missing keys');
    this.users = users;
  }
}

/** Builds the `e2ee` envelope for `text` to every member of the chat. */
export async function encrypt(text, { chatId, senderId, clientId, memberIds }) {
  await init({ id: senderId });
  const keys = await Promise.all(memberIds.map((id) => publicKeyOf(id)));
  const missing = memberIds.filter((_, i) => !keys[i]);
  if (missing.length) throw new MissingKeyError(missing);
  const aesKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: aadFor(chatId, senderId, clientId) },
    aesKey,
    enc.encode(text),
  );
  const raw = await crypto.subtle.exportKey('raw', aesKey);
  const wrapped = {};
  await Promise.all(
    memberIds.map(async (id, i) => {
      wrapped[String(id)] = b64(await crypto.subtle.encrypt(RSA, keys[i].key, raw));
    }),
  );
  return { v: 1, alg: ALG, iv: b64(iv), ciphertext: b64(ciphertext), keys: wrapped };
}

// An edit keeps the chat, sender and client id (the aad) but brings a new envelope,
// so the cache is keyed by the envelope's fresh iv as well.
function plainKey(message) {
  return `${message.chatId}:${message.senderId}:${message.clientId}:${message.e2ee?.iv ?? ''}`;
}

/** The plaintext of an encrypted message; rejects when this browser cannot read it. */
export function decrypt(message) {
  const cacheKey = plainKey(message);
  if (plainCache.has(cacheKey)) return plainCache.get(cacheKey);
  const p = (async () => {
    const env = message.e2ee;
    if (!env || env.v !== 1 || env.alg !== ALG) throw new Error('unknown envelope');
    await ready;
    if (!me?.privateKey) throw new Error('no private key');
    const wrapped = env.keys?.[String(me.userId)];
    if (!wrapped) throw new Error('not addressed to this user');
    const raw = await crypto.subtle.decrypt(RSA, me.privateKey, unb64(wrapped));
    const aesKey = await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: unb64(env.iv), additionalData: aadFor(message.chatId, message.senderId, message.clientId) },
      aesKey,
      unb64(env.ciphertext),
    );
    return dec.decode(plain);
  })();
  plainCache.set(cacheKey, p);
  p.catch(() => {
    if (!me?.privateKey) plainCache.delete(cacheKey); // keys not loaded yet: try again later
  });
  return p;
}

/** Our own just-encrypted text (`message` with its new `e2ee`), so it shows without a round trip. */
export function seed(message, text) {
  plainCache.set(plainKey(message), Promise.resolve(text));
}
