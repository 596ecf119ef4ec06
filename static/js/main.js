// Entry point: the router (/login, /register, /reset, /, /chat/:id, /settings) and the app shell.

import { App } from './app.js';
import { CallManager } from './call.js';
import { h, clear, icons, toast } from './ui.js';
import { authView, resetView } from './views/auth.js';
import { settingsView } from './views/settings.js';
import { sidebarView } from './views/sidebar.js';
import { chatView } from './views/chat.js';
import { registerServiceWorker, watchOnline, setServerDown, setFaviconBadge } from './pwa.js';

const app = new App();
window.parley = app; // handy in the console (and for the browser tests)
let calls = null;
const root = document.getElementById('app');

let shell = null; // { el, sidebar, pane, chat, banner }

function parseRoute(path) {
  if (path === '/login') return { name: 'login' };
  if (path === '/register') return { name: 'register' };
  if (path === '/reset') return { name: 'reset' };
  if (path === '/settings') return { name: 'settings' };
  const m = path.match(/^\/chat\/(\d+)\/?$/);
  if (m) return { name: 'chat', chatId: Number(m[1]) };
  return { name: 'home' };
}

export function navigate(path, { replace = false } = {}) {
  if (path !== location.pathname + location.search) {
    if (replace) history.replaceState({}, '', path);
    else history.pushState({}, '', path);
  }
  render();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[data-link]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());

function teardownShell() {
  if (!shell) return;
  shell.chat?.destroy?.();
  shell.sidebar.destroy?.();
  shell.offs.forEach((f) => f());
  shell = null;
}

function buildShell() {
  const sidebar = sidebarView(app, navigate);
  const pane = h('main', { class: 'pane', id: 'main' });
  const banner = h('div', { class: 'conn-banner', role: 'status', 'aria-live': 'polite', hidden: true });
  const el = h('div', { class: 'shell' }, banner, h('div', { class: 'layout' }, sidebar, pane));
  let bannerTimer = null;
  const setBanner = (state) => {
    clearTimeout(bannerTimer);
    if ((state === 'ready' || state === 'stopped') && navigator.onLine) {
      if (!banner.hidden) {
        banner.textContent = 'Connected';
        banner.classList.add('ok');
        bannerTimer = setTimeout(() => {
          banner.hidden = true;
          banner.classList.remove('ok');
          el.classList.remove('offline');
        }, 900);
      }
      el.classList.remove('offline');
      return;
    }
    // a short delay so a fast first connect does not flash the banner
    bannerTimer = setTimeout(() => {
      banner.classList.remove('ok');
      banner.textContent = !navigator.onLine
        ? 'You are offline. Messages you write will be sent when the network is back.'
        : app.everReady ? 'Reconnecting… messages you write will be sent when the connection is back.' : 'Connecting…';
      banner.hidden = false;
      el.classList.add('offline');
    }, app.everReady ? 300 : 1500);
  };
  const offs = [app.on('connection', setBanner)];
  const onNetwork = () => setBanner(app.socket.state);
  window.addEventListener('offline', onNetwork);
  window.addEventListener('online', onNetwork);
  offs.push(() => {
    window.removeEventListener('offline', onNetwork);
    window.removeEventListener('online', onNetwork);
  });
  offs.push(app.on('chats', updateTitle));
  offs.push(app.on('connection', (state) => {
    if (state === 'ready') setServerDown(false);
  }));
  setBanner(app.socket.state);
  return { el, sidebar, pane, banner, chat: null, chatId: undefined, offs };
}

/**
 * The title: the unread count and where the user is. A hidden tab (another tab in
 * front, the window minimised) shows just "(3) Parley" and a badge on the favicon,
 * both gone once it is visible again.
 */
function updateTitle() {
  const n = app.me ? app.unreadTotal() : 0;
  setFaviconBadge(n);
  if (!shell) return;
  if (document.visibilityState === 'hidden') {
    document.title = n ? `(${n}) Parley` : 'Parley';
    return;
  }
  const base = shell.viewKey === 'settings' ? 'Settings · Parley'
    : shell.chatId ? `${app.chatTitle(app.chats.get(shell.chatId))} · Parley` : 'Parley';
  document.title = n ? `(${n}) ${base}` : base;
}
document.addEventListener('visibilitychange', updateTitle);

/** `?call=ID&action=answer|decline` (a call notification's buttons): done once, then dropped from the URL. */
function takeCallAction() {
  const q = new URLSearchParams(location.search);
  const callId = q.get('call');
  const action = q.get('action');
  if (!callId) return;
  history.replaceState({}, '', location.pathname);
  if (/^[\w-]{1,64}$/.test(callId)) calls?.takeAction(callId, action);
}

function emptyPane() {
  return h('div', { class: 'pane-empty' },
    h('div', { class: 'empty-art big', html: icons.chat }),
    h('h2', {}, 'Select a conversation'),
    h('p', { class: 'muted' }, 'Pick a chat on the left, or search for someone to start a new one.'),
    h('p', { class: 'muted small' }, 'Tip: turn on the lock in a chat to end-to-end encrypt your messages.'));
}

let renderSeq = 0;
async function render() {
  const seq = ++renderSeq;
  const route = parseRoute(location.pathname);
  const signedIn = !!app.me;
  if (route.name === 'reset') {
    // A reset link works whether or not this browser is signed in (to any account).
    teardownShell();
    clear(root);
    const view = resetView(app, navigate);
    root.append(view);
    document.title = 'Choose a new password · Parley';
    document.body.className = 'route-auth';
    view.focusFirst();
    return;
  }
  if (route.name === 'login' || route.name === 'register') {
    if (signedIn) return navigate('/', { replace: true });
    teardownShell();
    clear(root);
    const view = authView(app, route.name, navigate);
    root.append(view);
    document.title = route.name === 'login' ? 'Sign in · Parley' : 'Create account · Parley';
    document.body.className = 'route-auth';
    view.focusFirst();
    return;
  }
  if (!signedIn) return navigate('/login', { replace: true });
  takeCallAction();
  if (!shell) {
    clear(root);
    shell = buildShell();
    root.append(shell.el);
  }
  const chatId = route.name === 'chat' ? route.chatId : null;
  const settings = route.name === 'settings';
  const viewKey = settings ? 'settings' : chatId ? `chat:${chatId}` : 'home';
  // the settings take the pane like a chat does (on a phone: the whole screen)
  document.body.className = settings ? 'route-chat route-settings' : chatId ? 'route-chat' : 'route-home';
  if (shell.viewKey === viewKey && (shell.chat || !chatId)) {
    updateTitle();
    return;
  }
  shell.chat?.destroy?.();
  shell.chat = null;
  shell.chatId = chatId;
  shell.viewKey = viewKey;
  app.setActiveChat(chatId);
  clear(shell.pane);
  app.emit('chats');
  if (settings) {
    shell.chat = settingsView(app, { navigate });
    shell.pane.append(shell.chat);
    updateTitle();
    shell.chat.focusFirst();
    return;
  }
  if (!chatId) {
    shell.pane.append(emptyPane());
    updateTitle();
    return;
  }
  let chat;
  try {
    chat = await app.ensureChat(chatId);
  } catch (e) {
    if (seq !== renderSeq) return;
    shell.pane.append(h('div', { class: 'pane-empty' },
      h('h2', {}, e.status === 403 ? 'This chat is not yours' : 'Chat not found'),
      h('p', { class: 'muted' }, e.message),
      h('a', { href: '/', class: 'btn', 'data-link': true }, 'Back to chats')));
    return;
  }
  if (seq !== renderSeq) return;
  shell.chat = chatView(app, chat, { navigate, calls });
  shell.pane.append(shell.chat);
  updateTitle();
  if (window.matchMedia('(pointer: fine)').matches) shell.chat.focusComposer();
  else shell.pane.querySelector('.chat-title')?.focus?.();
}

app.on('signedout', () => {
  teardownShell();
  navigate('/login', { replace: true });
});

async function boot() {
  calls = new CallManager(app);
  watchOnline();
  registerServiceWorker((url) => navigate(url));
  try {
    await app.restore();
  } catch (e) {
    // Offline (or the server is down): the shell came from the service worker's
    // cache; say which, and start for real once the network is back. The card
    // follows the network while it shows (the browser may learn it is offline only
    // after the page started, or the network may drop while it says "unreachable").
    setServerDown(true);
    document.documentElement.classList.remove('booting');
    if (navigator.onLine) toast(`Cannot reach the server: ${e.message}`, 'error', 8000);
    clear(root);
    const retry = h('button', { type: 'button', class: 'btn primary' }, 'Try again');
    retry.addEventListener('click', () => location.reload());
    const heading = h('h1', {});
    const text = h('p', { class: 'muted' });
    const show = () => {
      const offline = !navigator.onLine;
      heading.textContent = offline ? 'You are offline' : 'Parley is unreachable';
      text.textContent = offline
        ? 'Parley needs a connection to show your chats. It starts as soon as the network is back.'
        : 'The server did not answer. Check your connection and try again.';
      document.title = offline ? 'Offline · Parley' : 'Unreachable · Parley';
    };
    show();
    root.append(h('main', { class: 'auth', id: 'main' }, h('div', { class: 'auth-card offline-card' }, heading, text, retry)));
    // Back online: start, unless the network dropped again at once or the page is
    // already leaving (a reload then would cancel the navigation the user asked for).
    let leaving = false;
    window.addEventListener('pagehide', () => { leaving = true; });
    window.addEventListener('offline', show);
    window.addEventListener('online', () => {
      show();
      setTimeout(() => {
        if (navigator.onLine && !leaving) {
          leaving = true;
          location.reload();
        }
      }, 250);
    });
    return;
  }
  document.documentElement.classList.remove('booting');
  render();
}

boot();
