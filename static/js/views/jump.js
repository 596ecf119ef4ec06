// Jumping to one message of a chat (a search hit, a quoted original) and the
// "window" of history that a jump opens when that message is not loaded: the page
// around it, with older pages above (as always) and newer pages below, loaded as the
// reader scrolls down, until the window reaches the present again.
//
// The chat view registers itself here while it is open (`registerChatView`); a jump
// asks it for the row, or for the window around the message, then scrolls to the row,
// highlights it briefly and focuses it, so a screen reader reads it out.

import { get } from '../api.js';
import { toast } from '../ui.js';

const PAGE = 50;
const HIGHLIGHT_MS = 2200;
const VIEW_WAIT_MS = 8000;

const views = new Map(); // chatId -> the open chat view's jump interface
const waiting = new Map(); // chatId -> [resolve] of jumps waiting for the view to open

/**
 * Called by the chat view: `view` has `rowOf(messageId)` (the row element when that
 * message is rendered), `settle()` (resolves once no page is loading) and
 * `showAround(messageId)` (loads and renders its window; resolves when done).
 * Returns the function that unregisters it.
 */
export function registerChatView(chatId, view) {
  views.set(chatId, view);
  for (const resolve of waiting.get(chatId) || []) resolve(view);
  waiting.delete(chatId);
  return () => {
    if (views.get(chatId) === view) views.delete(chatId);
  };
}

function openChat(chatId) {
  if (views.has(chatId)) return Promise.resolve(views.get(chatId));
  // The router listens to popstate; importing it here would be a module cycle.
  history.pushState({}, '', `/chat/${chatId}`);
  window.dispatchEvent(new PopStateEvent('popstate'));
  return new Promise((resolve) => {
    const list = waiting.get(chatId) || [];
    list.push(resolve);
    waiting.set(chatId, list);
    setTimeout(() => resolve(views.get(chatId) || null), VIEW_WAIT_MS);
  });
}

let lit = null; // the row highlighted last, and its timer

/** Scrolls to a rendered row, highlights it for a moment and gives it focus. */
export function highlightRow(row) {
  if (lit) {
    clearTimeout(lit.timer);
    lit.row.classList.remove('jump-target');
  }
  // Not smooth: loading older pages while it runs would stop it halfway.
  row.scrollIntoView({ block: 'center' });
  // Restart the animation when the same row is chosen twice in a row.
  void row.offsetWidth;
  row.classList.add('jump-target');
  // Focusable only from script: the list stays one tab stop, not one per message.
  if (!row.hasAttribute('tabindex')) row.setAttribute('tabindex', '-1');
  row.focus({ preventScroll: true });
  lit = {
    row,
    timer: setTimeout(() => {
      row.classList.remove('jump-target');
      lit = null;
    }, HIGHLIGHT_MS),
  };
}

/**
 * Shows message `messageId` of chat `chatId`: opens the chat if another one is
 * open, loads the page around the message when it is not loaded, then scrolls to
 * it, highlights it and focuses it. Resolves true when it was shown.
 */
export async function jumpToMessage(chatId, messageId) {
  chatId = Number(chatId);
  messageId = Number(messageId);
  const view = await openChat(chatId);
  if (!view) return false;
  // a chat just opened is still loading its newest page, which may hold the message
  await view.settle();
  let row = view.rowOf(messageId);
  if (!row) {
    try {
      await view.showAround(messageId);
    } catch (e) {
      toast(e.status === 404 ? 'That message is no longer there.' : `Could not load that message: ${e.message}`, 'error');
      return false;
    }
    row = view.rowOf(messageId);
  }
  if (!row) {
    toast('That message is no longer there.', 'error');
    return false;
  }
  highlightRow(row);
  return true;
}

// ---------- the window of history around a message ----------
//
// A chat's store normally holds one contiguous run of messages that ends at the
// present. After a jump it holds a run that ends at `high` (the newest message of the
// window) while newer messages exist: the view shows only what is at or below `high`
// (live messages still arrive in the store, unseen), and loads `after` pages until
// `nextAfter` is null, when the run has reached the present again.

const windows = new WeakMap(); // ChatStore -> { high, nextAfter, loading }

/** The window a store is showing, or undefined when it shows the present. */
export function windowOf(store) {
  return windows.get(store);
}

/** Whether a message belongs in the view of a store (pending ones are the present's). */
export function inView(store, m) {
  const w = windows.get(store);
  return !w || (!!m.id && m.id <= w.high);
}

// Drops every stored message that the server gave (pending ones stay: they are the
// outbox's), so the store can start a new contiguous run.
function dropLoaded(store) {
  for (const [key, m] of [...store.byKey]) {
    if (!m.id) continue;
    store.byKey.delete(key);
    store.keyById.delete(Number(m.id));
  }
}

function ingestPage(store, messages) {
  for (const m of messages) store.upsert(m);
}

/**
 * Loads the page around `messageId` into `store` as a new run. Rejects with the
 * API error (404 when the message is not one of this chat's). While it loads it is
 * the store's `loading`, so no older page of the old run lands in the new one.
 */
export function loadAround(store, messageId) {
  const q = new URLSearchParams({ chatId: String(store.chatId), around: String(messageId), limit: String(PAGE) });
  const run = get(`/api/messages?${q}`).then((page) => {
    dropLoaded(store);
    ingestPage(store, page.messages);
    store.nextBefore = page.nextBefore ?? null;
    const high = page.messages.reduce((max, m) => Math.max(max, m.id), 0);
    if (page.nextAfter !== null && page.nextAfter !== undefined) windows.set(store, { high, nextAfter: page.nextAfter, loading: null });
    else windows.delete(store);
    return page.messages.length;
  });
  const done = run.finally(() => {
    if (store.loading === done) store.loading = null;
  });
  store.loading = done;
  return done;
}

/**
 * Loads the next newer page of the window. Resolves the number of messages added
 * (0 when there is no window or the window changed meanwhile).
 */
export function loadNewer(store) {
  const w = windows.get(store);
  if (!w) return Promise.resolve(0);
  if (w.loading) return w.loading;
  const q = new URLSearchParams({ chatId: String(store.chatId), after: String(w.nextAfter), limit: String(PAGE) });
  w.loading = get(`/api/messages?${q}`)
    .then((page) => {
      if (windows.get(store) !== w) return 0;
      ingestPage(store, page.messages);
      w.high = page.messages.reduce((max, m) => Math.max(max, m.id), w.high);
      if (page.nextAfter === null || page.nextAfter === undefined) windows.delete(store);
      else w.nextAfter = page.nextAfter;
      return page.messages.length;
    })
    .finally(() => {
      w.loading = null;
    });
  return w.loading;
}

/** Forgets the window: the store is empty of loaded messages and loads the newest page next. */
export function leaveWindow(store) {
  windows.delete(store);
  dropLoaded(store);
  store.nextBefore = undefined;
}
