// The browser side of the e2ee envelope, with Node's WebCrypto (the same API and
// algorithms the SPA uses). The Rust interop test drives it through stdin/stdout:
//   node webcrypto.mjs encrypt  < {plaintext, chatId, senderId, clientId, keys: {userId: spkiPem}}
//   node webcrypto.mjs decrypt  < {envelope, chatId, senderId, clientId, readerId, privatePkcs8Pem}
// and prints the envelope (JSON) or the plaintext.
import { webcrypto as crypto } from 'node:crypto';

const subtle = crypto.subtle;
const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const pemBody = (pem) => unb64(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''));
const aad = (chatId, senderId, clientId) =>
  new TextEncoder().encode(`parley/e2ee/v1|${chatId}|${senderId}|${clientId}`);
const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' };

async function encrypt({ plaintext, chatId, senderId, clientId, keys }) {
  const aesKey = await subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: aad(chatId, senderId, clientId) },
    aesKey,
    new TextEncoder().encode(plaintext),
  );
  const raw = await subtle.exportKey('raw', aesKey);
  const wrapped = {};
  for (const [userId, pem] of Object.entries(keys)) {
    const pub = await subtle.importKey('spki', pemBody(pem), OAEP, false, ['encrypt']);
    wrapped[userId] = b64(await subtle.encrypt({ name: 'RSA-OAEP' }, pub, raw));
  }
  return { v: 1, alg: 'RSA-OAEP-256+A256GCM', iv: b64(iv), ciphertext: b64(ciphertext), keys: wrapped };
}

async function decrypt({ envelope, chatId, senderId, clientId, readerId, privatePkcs8Pem }) {
  const priv = await subtle.importKey('pkcs8', pemBody(privatePkcs8Pem), OAEP, false, ['decrypt']);
  const raw = await subtle.decrypt({ name: 'RSA-OAEP' }, priv, unb64(envelope.keys[String(readerId)]));
  const aesKey = await subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
  const plain = await subtle.decrypt(
    { name: 'AES-GCM', iv: unb64(envelope.iv), additionalData: aad(chatId, senderId, clientId) },
    aesKey,
    unb64(envelope.ciphertext),
  );
  return new TextDecoder().decode(plain);
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const command = process.argv[2];
if (command === 'encrypt') {
  process.stdout.write(JSON.stringify(await encrypt(input)));
} else if (command === 'decrypt') {
  process.stdout.write(await decrypt(input));
} else {
  console.error('usage: node webcrypto.mjs encrypt|decrypt < input.json');
  process.exit(2);
}
