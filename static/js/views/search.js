// Searching the messages of one chat: the "Search messages" button of the chat
// header opens a panel under it; typing asks the server (full text, plaintext
// messages only) and lists the hits, newest first, as buttons; choosing one jumps to
// the message. Escape closes the panel and gives the focus back to the button.

import { get } from '../api.js';
import { h, clear, icons, timeOf, listTime, dayDiff } from '../ui.js';
import { jumpToMessage } from './jump.js';

const DEBOUNCE_MS = 300;
const PAGE = 20;
const MIN_WORD = 2; // the server ignores shorter query words
const SNIPPET_BEFORE = 40;
const SNIPPET_LENGTH = 160;

const WORD_SPLIT = /[^\p{L}\p{N}]+/u;
const isWordChar = (c) => /[\p{L}\p{N}]/u.test(c);

/** The query words the server searches for: 2 characters or more, folded. */
export function queryWords(query) {
  return String(query).split(WORD_SPLIT).map(fold).filter((w) => [...w].length >= MIN_WORD);
}

// Case- and accent-insensitive, as the server's collation compares.
function fold(s) {
  return s.toLowerCase().normalize('NFD').replace(/\p{M}/gu, '');
}

/**
 * Where the words of the query start words of `text`: [start, end) ranges of the
 * original string, sorted, not overlapping.
 */
export function matchRanges(text, words) {
  // `folded` is the text folded code point by code point; `from[i]` is the index in
  // `text` of the code point that folded character i came from.
  let folded = '';
  const from = [];
  const ends = [];
  for (let i = 0; i < text.length;) {
    const cp = String.fromCodePoint(text.codePointAt(i));
    const f = fold(cp);
    for (let k = 0; k < f.length; k++) {
      from.push(i);
      ends.push(i + cp.length);
    }
    folded += f;
    i += cp.length;
  }
  const ranges = [];
  for (let i = 0; i < folded.length; i++) {
    if (!isWordChar(folded[i]) || (i > 0 && isWordChar(folded[i - 1]))) continue;
    let best = 0;
    for (const w of words) if (w.length > best && folded.startsWith(w, i)) best = w.length;
    if (!best) continue;
    const start = from[i];
    const end = ends[i + best - 1];
    const last = ranges[ranges.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else ranges.push([start, end]);
    i += best - 1;
  }
  return ranges;
}

/** A short piece of `text` around its first match, with every match in <mark>. */
function snippet(text, words) {
  const flat = String(text || '').replace(/\s+/g, ' ');
  const ranges = matchRanges(flat, words);
  let start = 0;
  if (ranges.length && ranges[0][0] > SNIPPET_BEFORE) {
    start = ranges[0][0] - SNIPPET_BEFORE;
    const space = flat.indexOf(' ', start);
    if (space >= 0 && space < ranges[0][0]) start = space + 1;
  }
  const end = Math.min(flat.length, start + SNIPPET_LENGTH);
  const out = h('span', { class: 'hit-text' });
  if (start > 0) out.append('…');
  let at = start;
  for (const [a, b] of ranges) {
    if (b <= start || a >= end) continue;
    const s = Math.max(a, start);
    const e = Math.min(b, end);
    if (s > at) out.append(flat.slice(at, s));
    out.append(h('mark', {}, flat.slice(s, e)));
    at = e;
  }
  if (at < end) out.append(flat.slice(at, end));
  if (end < flat.length) out.append('…');
  return out;
}

function when(iso) {
  return dayDiff(iso) <= 0 ? timeOf(iso) : `${listTime(iso)}, ${timeOf(iso)}`;
}

/**
 * The search of chat `chat`: `button` goes in the chat header, `el` under it.
 * `destroy()` stops what is in flight.
 */
export function messageSearch(app, chat) {
  const chatId = chat.id;
  const panelId = `msg-search-${chatId}`;
  const button = h('button', {
    type: 'button', class: 'icon-btn search-btn', 'aria-label': 'Search messages', title: 'Search messages',
    'aria-expanded': 'false', 'aria-controls': panelId, html: icons.search,
  });
  const input = h('input', {
    type: 'search', class: 'msg-search-input', placeholder: 'Search in this chat', 'aria-label': 'Search messages in this chat',
    autocomplete: 'off', spellcheck: 'false', maxlength: '100', enterkeyhint: 'search',
  });
  const closeBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close search', html: icons.close });
  const note = h('p', { class: 'msg-search-note', hidden: true },
    h('span', { class: 'icon', html: icons.lock }),
    h('span', {}, 'Encrypted messages cannot be searched: the server never sees their text, so they never match.'));
  const status = h('p', { class: 'msg-search-status', role: 'status', 'aria-live': 'polite' });
  const hits = h('ul', { class: 'msg-search-hits', role: 'list', 'aria-label': 'Matching messages' });
  const more = h('button', { type: 'button', class: 'btn small msg-search-more' }, 'Load more');
  more.hidden = true;
  const el = h('div', { class: 'msg-search', id: panelId, role: 'search', 'aria-label': 'Search messages in this chat', hidden: true },
    h('div', { class: 'msg-search-bar' },
      h('span', { class: 'icon msg-search-icon', html: icons.search }),
      input, closeBtn),
    note, status, hits, more);

  let timer = null;
  let ctrl = null;
  let words = [];
  let query = '';
  let nextBefore = null;

  // Whether this chat has encrypted messages (or sends them now): the note says why
  // they are not found.
  function renderNote() {
    const store = app.stores.get(chatId);
    const anyEncrypted = store && [...store.byKey.values()].some((m) => m.encrypted);
    note.hidden = !(app.isEncrypted(chatId) || anyEncrypted || chat.lastMessage?.encrypted);
  }

  function hitButton(m) {
    const sender = m.senderId === app.me.id ? 'You' : app.user(m.senderId)?.username || 'Someone';
    const b = h('button', { type: 'button', class: 'hit', dataset: { messageId: m.id } },
      h('span', { class: 'hit-head' },
        h('span', { class: 'hit-sender' }, sender),
        h('time', { class: 'hit-time', datetime: m.createdAt }, when(m.createdAt))),
      snippet(m.content, words));
    b.addEventListener('click', () => choose(m));
    return h('li', {}, b);
  }

  async function choose(m) {
    close({ focusButton: false });
    const shown = await jumpToMessage(chatId, m.id);
    if (!shown) button.focus();
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function summary(count) {
    if (!count) return `No messages match “${query}”.`;
    return `${count} message${count === 1 ? '' : 's'} found${nextBefore !== null ? ', more below' : ''}.`;
  }

  async function fetchPage(before) {
    ctrl?.abort();
    ctrl = new AbortController();
    const mine = ctrl;
    const q = new URLSearchParams({ query, chatId: String(chatId), limit: String(PAGE) });
    if (before !== null && before !== undefined) q.set('before', String(before));
    try {
      const page = await get(`/api/messages/search?${q}`, { signal: mine.signal });
      return mine === ctrl ? page : null;
    } catch (e) {
      if (e.name === 'AbortError' || mine !== ctrl) return null;
      setStatus(e.status === 429 ? 'Too many searches at once; try again in a minute.' : `Search failed: ${e.message}`);
      return null;
    }
  }

  async function run() {
    const q = input.value.trim();
    clearTimeout(timer);
    if (q === query && hits.childElementCount) return;
    query = q;
    words = queryWords(q);
    nextBefore = null;
    more.hidden = true;
    clear(hits);
    if (!words.length) {
      ctrl?.abort();
      setStatus(q ? `Type at least ${MIN_WORD} letters of a word.` : '');
      return;
    }
    setStatus('Searching…');
    const page = await fetchPage(null);
    if (!page) return;
    renderNote();
    for (const m of page.messages) hits.append(hitButton(m));
    nextBefore = page.nextBefore ?? null;
    more.hidden = nextBefore === null;
    setStatus(summary(page.messages.length));
  }

  async function loadMore() {
    if (nextBefore === null) return;
    const hadFocus = document.activeElement === more;
    more.disabled = true;
    const page = await fetchPage(nextBefore);
    more.disabled = false;
    if (!page) return;
    const first = hits.childElementCount;
    for (const m of page.messages) hits.append(hitButton(m));
    nextBefore = page.nextBefore ?? null;
    more.hidden = nextBefore === null;
    setStatus(summary(hits.childElementCount));
    // The button may be gone now: carry on from the first new hit.
    if (hadFocus) hits.children[first]?.querySelector('button')?.focus();
  }

  function open() {
    el.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    button.classList.add('on');
    renderNote();
    input.focus();
    input.select();
  }

  function close({ focusButton = true } = {}) {
    if (el.hidden) return;
    el.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    button.classList.remove('on');
    if (focusButton) button.focus();
  }

  button.addEventListener('click', () => (el.hidden ? open() : close()));
  closeBtn.addEventListener('click', () => close());
  more.addEventListener('click', loadMore);
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  });
  const hitButtons = () => [...hits.querySelectorAll('button.hit')];
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      run();
    } else if (e.key === 'ArrowDown') {
      const first = hitButtons()[0];
      if (first) {
        e.preventDefault();
        first.focus();
      }
    }
  });
  hits.addEventListener('keydown', (e) => {
    const list = hitButtons();
    const i = list.indexOf(document.activeElement);
    if (i < 0) return;
    let next = null;
    if (e.key === 'ArrowDown') next = list[i + 1] || (more.hidden ? null : more);
    else if (e.key === 'ArrowUp') next = i > 0 ? list[i - 1] : input;
    else if (e.key === 'Home') next = list[0];
    else if (e.key === 'End') next = list[list.length - 1];
    if (next) {
      e.preventDefault();
      next.focus();
    }
  });
  // Escape anywhere in the panel closes it (and nothing else: a reply or an edit
  // being written stays as it is).
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close();
    }
  });

  return {
    button,
    el,
    open,
    close,
    destroy() {
      clearTimeout(timer);
      ctrl?.abort();
    },
  };
}
