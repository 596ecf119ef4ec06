// Test harness: starts a real Parley (its own MySQL database, port and uploads
// directory), launches Debian's chromium through playwright-core, and cleans up.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync, rmSync, createWriteStream, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const browserDir = resolve(here, '..');
export const repoDir = resolve(browserDir, '..', '..');
export const artifactsDir = join(browserDir, 'artifacts');
mkdirSync(artifactsDir, { recursive: true });

const PARLEY_BIN = process.env.PARLEY_BIN || resolve(browserDir, '../../target/debug/parley');
const MYSQL_SERVER = (process.env.PARLEY_TEST_MYSQL || 'mysql://root@127.0.0.1:3306').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function mysqlArgs() {
  const u = new URL(MYSQL_SERVER);
  const args = ['-h', u.hostname || '127.0.0.1', '-P', u.port || '3306', '-u', decodeURIComponent(u.username || 'root')];
  if (u.password) args.push(`-p${decodeURIComponent(u.password)}`);
  return args;
}

/** Runs SQL with the mysql CLI; returns rows as arrays of strings (tab separated output). */
export function mysql(sql, database) {
  const args = [...mysqlArgs(), '-N', '-B', '--raw', '-e', sql];
  if (database) args.push(database);
  const out = execFileSync('mysql', args, { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

export class Parley {
  /** `env`: more settings for this server (and its admin CLI), e.g. `PARLEY__AUTH__REGISTRATION`. */
  constructor(name, { env = {} } = {}) {
    this.name = name;
    this.extraEnv = env;
    this.db = `parley_browser_${randomBytes(6).toString('hex')}`;
    this.uploads = mkdtempSync(join(tmpdir(), 'parley-uploads-'));
    this.proc = null;
    this.port = 0;
    this.logPath = join(artifactsDir, `parley-${name}.log`);
    this.log = createWriteStream(this.logPath, { flags: 'w' });
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  env() {
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME || tmpdir(),
      RUST_BACKTRACE: '1',
      PARLEY__DATABASE__URL: `${MYSQL_SERVER}/${this.db}`,
      PARLEY__AUTH__JWT_SECRET: 'browser-tests-secret-0123456789abcdef0123456789',
      PARLEY__AUTH__PBKDF2_ITERATIONS: '1000',
      PARLEY__SERVER__PORT: String(this.port),
      PARLEY__SERVER__HOST: '127.0.0.1',
      PARLEY__LOG__FORMAT: 'json',
      PARLEY__METRICS__LISTEN: '',
      PARLEY__STATIC__DIR: join(repoDir, 'static'),
      PARLEY__STORAGE__UPLOADS_DIR: this.uploads,
      PARLEY__LIMITS__LOGIN_PER_IP_PER_MIN: '1000',
      PARLEY__LIMITS__REGISTER_PER_IP_PER_MIN: '1000',
      PARLEY__CALLS__RING_TIMEOUT_SECS: '45',
      ...this.extraEnv,
    };
  }

  /**
   * Runs the admin CLI (`parley admin …`) against this server's database, with the
   * same settings; returns what it printed on stdout.
   */
  admin(...args) {
    return execFileSync(PARLEY_BIN, ['admin', ...args], { env: this.env(), encoding: 'utf8', timeout: 60000 });
  }

  async start() {
    if (!existsSync(PARLEY_BIN)) {
      throw new Error(`Parley binary not found at ${PARLEY_BIN}; build it with: cargo build --workspace --all-targets --locked`);
    }
    if (!this.port) this.port = await freePort();
    this.proc = spawn(PARLEY_BIN, [], { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout.pipe(this.log, { end: false });
    this.proc.stderr.pipe(this.log, { end: false });
    let exited = null;
    this.proc.once('exit', (code, signal) => {
      exited = { code, signal };
    });
    const deadline = Date.now() + 60000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`parley exited early (${JSON.stringify(exited)}); see ${this.logPath}`);
      try {
        const res = await fetch(`${this.url}/api/ready`);
        if (res.status === 200) return this;
      } catch {
        /* not listening yet */
      }
      await sleep(150);
    }
    throw new Error(`parley did not become ready; see ${this.logPath}`);
  }

  /** SIGKILL, as a crash would. */
  async kill() {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    if (p.exitCode !== null || p.signalCode !== null) return;
    await new Promise((r) => {
      p.once('exit', r);
      p.kill('SIGKILL');
    });
  }

  async stop() {
    await this.kill();
    try {
      mysql(`DROP DATABASE IF EXISTS \`${this.db}\``);
    } catch (e) {
      console.error(`could not drop ${this.db}: ${e.message}`);
    }
    rmSync(this.uploads, { recursive: true, force: true });
    this.log.end();
  }

  query(sql) {
    return mysql(sql, this.db);
  }
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      // documents fulfilled by the CSP route below would otherwise count as "public" and be
      // refused WebSockets to 127.0.0.1 (Chrome's Local Network Access checks)
      '--disable-features=LocalNetworkAccessChecks',
    ],
  });
}

/** A browser context for one person: console errors are collected for the report. */
export async function person(browser, server, { width = 1200, height = 800, name = 'user' } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, baseURL: server.url });
  await context.grantPermissions(['microphone', 'camera'], { origin: server.url });
  await withProductionCsp(context, server);
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`${name}: ${e.message}`));
  if (process.env.PARLEY_DEBUG_WS) {
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => console.log(`# ${name} >> ${String(f.payload).slice(0, 240)}`));
      ws.on('framereceived', (f) => console.log(`# ${name} << ${String(f.payload).slice(0, 240)}`));
    });
    page.on('console', (m) => console.log(`# ${name} console.${m.type()}: ${m.text()}`));
  }
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`${name} console: ${m.text()}`);
  });
  return { context, page, name };
}

/**
 * Serves documents with the Content-Security-Policy nginx sends in production, so a
 * violation (inline script or style, a CDN, a blob: fetch) shows up as a console error.
 */
export const CSP = (server) => [
  "default-src 'self'",
  "media-src 'self' blob:",
  `connect-src 'self' ws://127.0.0.1:${server.port}`,
  "img-src 'self' data: blob:", // photos are fetched with the token and shown from blob: URLs (as nginx allows)
  "frame-ancestors 'none'",
  "base-uri 'self'",
  "form-action 'self'",
].join('; ');

export async function withProductionCsp(context, server) {
  await context.route('**/*', async (route) => {
    const req = route.request();
    // The service worker (static/sw.js) fetches documents itself (and caches
    // index.html): those requests come from the worker, not as "document"s, and get
    // the header when they turn out to be HTML, as nginx adds it to every response.
    const fromWorker = !!req.serviceWorker();
    if (req.resourceType() !== 'document' && !fromWorker) return route.continue();
    try {
      const res = await route.fetch();
      const headers = res.headers();
      if (fromWorker && !String(headers['content-type'] || '').startsWith('text/html')) return await route.fulfill({ response: res });
      await route.fulfill({ response: res, headers: { ...headers, 'content-security-policy': CSP(server) } });
    } catch (e) {
      // a context closed (or a worker stopped) while its request was on the way
      if (!/closed|disposed|Target/i.test(String(e?.message))) throw e;
    }
  });
}

export function cspErrors(...pages) {
  return pages.flatMap((p) => p.errors || []).filter((e) => /Content Security Policy|Refused to/i.test(e));
}

export function unique(prefix) {
  return `${prefix}${randomBytes(3).toString('hex')}`;
}

export async function register(page, { email, username, password }, { path = '/register' } = {}) {
  await page.goto(path);
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.locator('.me-status.ok').waitFor({ timeout: 15000 });
}

/** Signs in on the sign-in page and waits for the live connection. */
export async function login(page, { username, password }) {
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  await page.locator('.me-status.ok').waitFor({ timeout: 15000 });
}

export async function shot(page, name) {
  const path = join(artifactsDir, `${name}.png`);
  await page.screenshot({ path });
  return path;
}
