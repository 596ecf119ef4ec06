// A stand-in push service on loopback for the browser tests: it hands out
// subscriptions (a P-256 key pair and an auth secret each, as a browser's push
// service would), takes Parley's Web Push POSTs, checks their VAPID JWT (RFC 8292)
// and decrypts their aes128gcm bodies (RFC 8291) with the subscription's private
// key. Node's crypto only; no third-party code.

import { createServer } from 'node:http';
import { createECDH, createPublicKey, hkdfSync, createDecipheriv, randomBytes, verify } from 'node:crypto';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const unb64url = (s) => Buffer.from(s, 'base64url');

/** Decrypts an RFC 8291 body (one aes128gcm record) for `sub` ({privateKey ECDH, publicKey, auth}). */
export function decrypt(body, sub) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const ecdhSecret = sub.ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), sub.publicKey, asPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', ecdhSecret, sub.auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const tag = ciphertext.subarray(ciphertext.length - 16);
  const d = createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(tag);
  const padded = Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - 16)), d.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end -= 1;
  if (padded[end] !== 2) throw new Error('not the last record (padding delimiter 2 missing)');
  return padded.subarray(0, end).toString('utf8');
}

/** Checks `Authorization: vapid t=<jwt>, k=<key>`; returns the claims (throws when wrong). */
export function checkVapid(header, origin) {
  const m = /^vapid t=([\w-]+\.[\w-]+\.[\w-]+),\s*k=([\w-]+)$/.exec(header || '');
  if (!m) throw new Error(`no VAPID authorization: ${header}`);
  const [head, claims, sig] = m[1].split('.');
  const k = unb64url(m[2]);
  if (k.length !== 65 || k[0] !== 4) throw new Error('k is not an uncompressed P-256 point');
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(k.subarray(1, 33)), y: b64url(k.subarray(33)) }, format: 'jwk' });
  const ok = verify('sha256', Buffer.from(`${head}.${claims}`), { key, dsaEncoding: 'ieee-p1363' }, unb64url(sig));
  if (!ok) throw new Error('the VAPID JWT signature does not verify');
  const h = JSON.parse(unb64url(head).toString());
  if (h.alg !== 'ES256') throw new Error(`alg ${h.alg}`);
  const c = JSON.parse(unb64url(claims).toString());
  if (c.aud !== origin) throw new Error(`aud ${c.aud}, expected ${origin}`);
  const now = Date.now() / 1000;
  if (!(c.exp > now && c.exp <= now + 24 * 3600 + 60)) throw new Error(`exp ${c.exp} not within 24 h`);
  if (!c.sub) throw new Error('no sub');
  return { key: m[2], claims: c };
}

export class PushService {
  constructor() {
    this.subs = new Map(); // id -> { ecdh, publicKey, auth }
    this.received = []; // { id, headers, payload, error }
    this.waiters = [];
    this.server = createServer((req, res) => this.onRequest(req, res));
  }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  stop() {
    this.server.closeAllConnections?.();
    return new Promise((r) => this.server.close(r));
  }

  /** A new subscription: what `PushSubscription.toJSON()` gives a page. */
  subscribe() {
    const id = randomBytes(8).toString('hex');
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const sub = { ecdh, publicKey: ecdh.getPublicKey(), auth: randomBytes(16) };
    this.subs.set(id, sub);
    return { endpoint: `${this.origin}/push/${id}`, keys: { p256dh: b64url(sub.publicKey), auth: b64url(sub.auth) } };
  }

  onRequest(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const id = req.url.split('/').pop();
      const sub = this.subs.get(id);
      const entry = { id, headers: req.headers, payload: null, error: null };
      try {
        if (req.method !== 'POST' || !sub) throw new Error(`unknown ${req.method} ${req.url}`);
        entry.vapid = checkVapid(req.headers.authorization, this.origin);
        if (req.headers['content-encoding'] !== 'aes128gcm') throw new Error(`content-encoding ${req.headers['content-encoding']}`);
        entry.payload = JSON.parse(decrypt(Buffer.concat(chunks), sub));
      } catch (e) {
        entry.error = e.message;
      }
      this.received.push(entry);
      this.waiters = this.waiters.filter((w) => !w(entry));
      res.writeHead(sub ? 201 : 404).end();
    });
  }

  /** Resolves with the next push that `pred` accepts (rejects after `ms`). */
  next(pred = () => true, ms = 5000) {
    const seen = this.received.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no push arrived')), ms);
      this.waiters.push((e) => {
        if (!pred(e)) return false;
        clearTimeout(timer);
        resolve(e);
        return true;
      });
    });
  }
}
