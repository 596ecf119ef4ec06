// One conversation: header (peer, presence, encryption switch, call), the message
// history with infinite scroll upwards, the typing line and the composer with
// hold-to-record voice messages and attachments (views/attachments.js); each
// message's actions (reply, edit, delete for everyone, copy, reactions); photos open
// in the image viewer (views/viewer.js).

import { h, clear, icon, icons, avatar, timeOf, dayLabel, lastSeen, duration, toast, announce, fingerprintGroups } from '../ui.js';
import * as e2ee from '../e2ee.js';
import { Recorder, recordingSupported, audioPlayer } from '../voice.js';
import { keyOf } from '../app.js';
import { callText, tickIcon, STATUS_LABEL } from './sidebar.js';
import { confirmDialog } from './dialogs.js';
import { chatInfoDialog } from './details.js';
import { systemText, displayName } from './system.js';
import { openMenu, openReactionPicker, onLongPress, closePopup, popupOwner } from './message-actions.js';
import { actionable, plainLine, quoteEl, reactionsEl, reactionSig, toolsEl, DELETED_TEXT } from './message-parts.js';
import { registerChatView, windowOf, inView, loadAround, loadNewer, leaveWindow, jumpToMessage } from './jump.js';
import { messageSearch } from './search.js';
import { attachments } from './attachments.js';
import { mediaBody, isMediaKind } from './media-parts.js';
import { openViewer, closeViewer } from './viewer.js';

const GROUP_GAP_MS = 5 * 60 * 1000;
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 4000;
const HOLD_MS = 350;
const CANNOT_DECRYPT = '🔒 Cannot decrypt this message on this device';

export function chatView(app, chat, { navigate, calls }) {
  const chatId = chat.id;
  const me = app.me;
  const isGroup = chat.kind === 'group';
  const store = app.store(chatId);
  const rows = new Map(); // key -> { el, msg, sig, rsig }
  const offs = [];
  let mode = null; // the composer answers or edits a message: { kind: 'reply' | 'edit', msg, draft }

  // ---------- header ----------
  const peer = () => app.peerOf(chat);
  const titleText = () => app.chatTitle(chat);
  const headAvatar = h('span', { class: 'head-avatar' });
  const title = h('h1', { class: 'chat-title', id: 'chat-title' }, titleText());
  const sub = h('p', { class: 'chat-sub', id: 'chat-sub' });
  const lockBtn = h('button', {
    type: 'button', class: 'e2ee-toggle', role: 'switch', 'aria-checked': 'false',
    'aria-label': 'End-to-end encryption', title: 'End-to-end encryption',
  }, h('span', { class: 'icon', html: icons.unlock }), h('span', { class: 'e2ee-label' }, 'Encryption'));
  const callBtn = isGroup ? null : h('button', { type: 'button', class: 'icon-btn call-btn', 'aria-label': 'Start video call', title: 'Video call', html: icons.video });
  const infoBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Chat details and key fingerprints', title: 'Details', html: icons.info });
  const back = h('a', { href: '/', class: 'icon-btn back-btn', 'data-link': true, 'aria-label': 'Back to chats', html: icons.back });
  const search = messageSearch(app, chat);
  const header = h('header', { class: 'chat-head' },
    back, headAvatar,
    h('div', { class: 'chat-head-text' }, title, sub),
    h('div', { class: 'head-actions' }, search.button, lockBtn, callBtn, infoBtn));

  const banners = h('div', { class: 'banners' });
  // why nothing can be sent here: removed from the group, or the other person blocked
  const stateBanner = h('div', { class: 'banner chat-state', role: 'status', hidden: true });

  // ---------- messages ----------
  const topNote = h('div', { class: 'history-note', role: 'status' });
  const list = h('div', { class: 'msg-list' });
  const bottomNote = h('div', { class: 'history-note newer-note', role: 'status' });
  const scroller = h('div', {
    class: 'messages', role: 'log', 'aria-live': 'off', 'aria-label': `Messages with ${titleText()}`, tabindex: '0',
  }, topNote, list, bottomNote);
  const jump = h('button', { type: 'button', class: 'jump-btn', hidden: true, 'aria-label': 'Jump to latest messages' },
    h('span', { class: 'icon rot', html: icons.back }), h('span', { class: 'jump-count' }));
  const typing = h('div', { class: 'typing-line', 'aria-live': 'polite' });
  const sendError = h('div', { class: 'send-error', role: 'alert', hidden: true });

  // ---------- composer ----------
  const input = h('textarea', {
    id: 'composer-input', rows: '1', placeholder: 'Message', 'aria-label': 'Message', maxlength: '8000',
    enterkeyhint: 'send', autocomplete: 'off',
  });
  const sendBtn = h('button', { type: 'submit', class: 'round-btn send-btn', 'aria-label': 'Send message', html: icons.send, hidden: true });
  const micBtn = h('button', {
    type: 'button', class: 'round-btn mic-btn', 'aria-label': 'Record voice message (hold, or press to start)',
    title: 'Hold to record a voice message', html: icons.mic,
  });
  const recTime = h('span', { class: 'rec-time', 'aria-live': 'off' }, '0:00');
  const meter = h('div', { class: 'meter', 'aria-hidden': 'true' });
  const bars = [];
  for (let i = 0; i < 28; i++) {
    const b = h('span', { class: 'meter-bar' });
    bars.push(b);
    meter.append(b);
  }
  const recCancel = h('button', { type: 'button', class: 'icon-btn rec-cancel', 'aria-label': 'Cancel recording', html: icons.trash });
  const recSend = h('button', { type: 'button', class: 'round-btn rec-send', 'aria-label': 'Send voice message', html: icons.send });
  const recHint = h('span', { class: 'rec-hint' }, 'Release to send · slide left or Esc to cancel');
  const recorderBar = h('div', { class: 'recorder', role: 'group', 'aria-label': 'Recording voice message', hidden: true },
    recCancel, h('span', { class: 'rec-dot', 'aria-hidden': 'true' }), recTime, meter, recHint, recSend);
  // "Replying to …" / "Editing message" above the composer
  const modeBar = h('div', { class: 'compose-mode', role: 'group', 'aria-label': 'Reply or edit', hidden: true });

  const el = h('section', { class: 'chat', 'aria-labelledby': 'chat-title', dataset: { chatId } });
  const attach = attachments(app, chatId, {
    chatEl: el,
    composerInput: input,
    reply: () => (mode?.kind === 'reply' ? mode.msg : null),
    onSent: () => {
      if (mode?.kind === 'reply') exitMode({ restoreDraft: false });
    },
  });
  const form = h('form', { class: 'composer', 'aria-label': 'Write a message' },
    // the attach button after the text, so Shift+Tab from the text still reaches the messages
    h('div', { class: 'composer-box' }, input, attach.button), attach.fileInput, micBtn, sendBtn, recorderBar);
  el.append(
    header, search.el, banners, stateBanner,
    h('div', { class: 'messages-wrap' }, scroller, jump),
    typing, sendError, modeBar, attach.tray, form, attach.dropTarget);

  // ---------- header state ----------
  function renderHeader() {
    clear(headAvatar);
    const p = peer();
    headAvatar.append(isGroup ? avatar(titleText(), chat.id + 1000) : avatar(titleText(), p?.id, { online: !!p?.online }));
    title.textContent = titleText();
    const who = app.typingIn(chatId);
    sub.classList.remove('online', 'typing');
    if (who.length) {
      sub.textContent = isGroup ? `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…` : 'typing…';
      sub.classList.add('typing');
    } else if (isGroup) {
      const online = chat.members.filter((m) => m.id !== me.id && app.user(m.id)?.online).length;
      const n = chat.members.length;
      sub.textContent = `${n} member${n === 1 ? '' : 's'}${online ? `, ${online} online` : ''}`;
    } else {
      sub.textContent = lastSeen(p);
      if (p?.online) sub.classList.add('online');
    }
  }

  function renderLock() {
    const on = app.isEncrypted(chatId);
    lockBtn.setAttribute('aria-checked', String(on));
    lockBtn.classList.toggle('on', on);
    lockBtn.querySelector('.icon').innerHTML = on ? icons.lock : icons.unlock;
    lockBtn.title = on ? 'Encryption on — new messages are end-to-end encrypted' : 'Encryption off';
    input.placeholder = on ? 'Encrypted message' : 'Message';
    el.classList.toggle('encrypted', on);
  }

  async function renderBanners() {
    clear(banners);
    const warnings = e2ee.keyWarnings();
    for (const m of chat.members) {
      if (m.id === me.id || !warnings[m.id]) continue;
      const u = app.user(m.id) || m;
      const view = h('button', { type: 'button', class: 'btn small' }, 'View fingerprints');
      const ok = h('button', { type: 'button', class: 'btn small ghost' }, 'Dismiss');
      view.addEventListener('click', () => chatInfoDialog(app, chat));
      ok.addEventListener('click', () => e2ee.acknowledgeKey(m.id));
      banners.append(h('div', { class: 'banner warn key-changed', role: 'alert' },
        h('span', { class: 'icon', html: icons.warn }),
        h('div', { class: 'banner-text' },
          h('strong', {}, `${u.username}'s security key has changed.`),
          ` New fingerprint: ${fingerprintGroups(warnings[m.id].current).slice(0, 19)}… This happens when they use a new browser or device; if you did not expect it, verify it with them before sending anything sensitive.`),
        h('div', { class: 'banner-actions' }, view, ok)));
    }
    if (app.isEncrypted(chatId)) {
      const results = await Promise.all(chat.members.map((m) => e2ee.publicKeyOf(m.id).then((k) => [m, k], () => [m, undefined])));
      const missing = results.filter(([m, k]) => k === null && m.id !== me.id).map(([m]) => app.user(m.id)?.username || m.username);
      if (missing.length && app.isEncrypted(chatId)) {
        banners.append(h('div', { class: 'banner warn no-key', role: 'status' },
          h('span', { class: 'icon', html: icons.lock }),
          h('div', { class: 'banner-text' }, `${missing.join(', ')} ${missing.length > 1 ? 'have' : 'has'} no encryption key yet, so encrypted messages cannot be sent here until they open Parley.`)));
      }
    }
  }

  // ---------- messages ----------
  function bodySig(m) {
    const q = m.replyTo;
    const extra = `${m.deleted ? 'deleted' : ''}|${m.editedAt || ''}|${q ? `${q.id}:${q.deleted}:${q.preview}:${q.senderId}` : ''}`;
    if (m.kind === 'audio') return `audio|${m.clientId}|${extra}`;
    if (m.kind === 'call') return `call|${m.content}`;
    if (m.kind === 'system') return `system|${m.content}|${systemText(app, m, chat)}`;
    if (isMediaKind(m.kind)) return `${m.kind}|${m.media?.mediaId ?? ''}|${m.encrypted ? `e:${m.e2ee?.iv}` : ''}|${m.content}|${extra}`;
    return `${m.kind}|${m.encrypted ? `e:${m.e2ee?.iv}` : ''}|${m.content}|${extra}`;
  }

  function ticks(m) {
    const label = STATUS_LABEL[m.status] || m.status;
    return h('span', { class: `ticks s-${m.status}`, role: 'img', 'aria-label': label, title: m.error ? `${label}: ${m.error}` : label, html: icons[tickIcon(m.status)] });
  }

  function metaOf(m) {
    const own = m.senderId === me.id;
    const meta = h('span', { class: 'meta' },
      m.encrypted ? h('span', { class: 'meta-lock', role: 'img', 'aria-label': 'End-to-end encrypted', html: icons.lock }) : null,
      m.editedAt && !m.deleted ? h('span', { class: 'edited', title: `Edited ${timeOf(m.editedAt)}` }, 'edited') : null,
      h('time', { datetime: m.createdAt }, timeOf(m.createdAt)),
      own ? ticks(m) : null);
    if (own && m.status === 'failed' && m.retry) {
      const retry = h('button', { type: 'button', class: 'retry-btn' }, 'Retry');
      retry.addEventListener('click', () => app.retry(m));
      meta.append(retry);
    }
    return meta;
  }

  function textBody(m) {
    const t = h('div', { class: 'text' });
    if (!m.encrypted) {
      t.textContent = m.content;
      return t;
    }
    t.classList.add('decrypting');
    t.textContent = 'Decrypting…';
    e2ee.decrypt(m).then(
      (plain) => {
        t.textContent = plain;
        t.classList.remove('decrypting');
      },
      () => {
        t.textContent = CANNOT_DECRYPT;
        t.classList.remove('decrypting');
        t.classList.add('undecryptable');
      },
    );
    return t;
  }

  function buildRow(m) {
    const own = m.senderId === me.id;
    if (m.kind === 'system') {
      // a group's change: one plain centred line, no bubble and no actions
      return h('div', { class: 'msg-row system', dataset: { key: keyOf(m), id: m.id || '' } },
        h('div', { class: 'day-sep', hidden: true }, h('span', {})),
        h('p', { class: 'system-line' }, h('span', { class: 'system-text' }, systemText(app, m, chat)),
          h('time', { datetime: m.createdAt }, timeOf(m.createdAt))));
    }
    if (m.kind === 'call') {
      const c = (() => {
        try {
          return JSON.parse(m.content);
        } catch {
          return {};
        }
      })();
      const missed = ['timeout', 'cancelled', 'busy'].includes(c.outcome) && c.callerId !== me.id;
      return h('div', { class: 'msg-row system', dataset: { key: keyOf(m), id: m.id || '' } },
        h('div', { class: 'day-sep', hidden: true }, h('span', {})),
        h('div', { class: `call-line${missed ? ' missed' : ''}` },
          h('span', { class: 'icon', html: c.callerId === me.id ? icons.callOut : icons.callIn }),
          h('span', { class: 'call-text' }, callText(m, me.id)),
          h('time', { datetime: m.createdAt }, timeOf(m.createdAt))));
    }
    const key = keyOf(m);
    const rowEl = h('div', { class: `msg-row ${own ? 'own' : 'theirs'}`, dataset: { key, id: m.id || '', status: m.status || '' } },
      h('div', { class: 'day-sep', hidden: true }, h('span', {})),
      h('div', { class: 'msg-line' }, bubbleOf(m), actionable(m) ? toolsFor(key) : null),
      reactionsEl(app, m, (emoji, active, chip) => toggleReaction(key, emoji, active, chip)));
    // right click (or the context-menu key) and a long touch open the menu
    onLongPress(rowEl, (x, y) => openActions(key, { x, y }));
    rowEl.addEventListener('contextmenu', (e) => {
      if (!actionable(rows.get(key)?.msg)) return;
      const sel = window.getSelection?.();
      if (sel && !sel.isCollapsed && rowEl.contains(sel.anchorNode)) return; // copying a selection: the browser's menu
      e.preventDefault();
      openActions(key, e.clientX || e.clientY ? { x: e.clientX, y: e.clientY } : null);
    });
    return rowEl;
  }

  function bubbleOf(m) {
    const own = m.senderId === me.id;
    const sender = isGroup && !own ? h('div', { class: 'sender' }, displayName(app, m.senderId, chat) || 'Someone') : null;
    if (m.deleted) {
      return h('div', { class: 'bubble deleted' }, sender,
        h('div', { class: 'text deleted-text' }, h('span', { class: 'icon', html: icons.ban }), DELETED_TEXT),
        metaOf(m));
    }
    let body;
    if (m.kind === 'audio') {
      const audio = m.localAudio && !m.audio?.audioId ? { ...m.audio, url: null } : m.audio || {};
      body = audio.url || audio.audioId ? audioPlayer(audio) : localPlayer(m);
    } else if (isMediaKind(m.kind)) body = mediaBody(m);
    else body = textBody(m);
    const kindClass = m.kind === 'audio' ? ' audio' : isMediaKind(m.kind) ? ` media ${m.kind === 'image' ? 'photo' : 'doc'}` : '';
    return h('div', { class: `bubble${m.encrypted ? ' encrypted' : ''}${kindClass}` },
      sender,
      quoteEl(app, store, m, jumpTo),
      body,
      metaOf(m));
  }

  function toolsFor(key) {
    return toolsEl({ onReact: () => openPicker(key, null), onMenu: () => openActions(key, null) });
  }

  // A pending voice message plays straight from the recording.
  function localPlayer(m) {
    const audio = { audioId: `local-${m.clientId}`, url: null, durationMs: m.audio?.durationMs };
    const p = audioPlayer({ ...audio, url: m.localAudio });
    return p;
  }

  // A row stays in place (no re-animation, focus kept); its parts are rebuilt when they change.
  function updateRow(row, m, force = false) {
    const sig = bodySig(m);
    const line = row.el.querySelector('.msg-line');
    if (!line) {
      // a call line
      if (sig !== row.sig) {
        const fresh = buildRow(m);
        row.el.replaceWith(fresh);
        row.el = fresh;
        row.sig = sig;
      }
    } else {
      const bubble = line.querySelector('.bubble');
      // a voice message keeps its player (and its playback) unless it was deleted or requoted
      const rebuild = force || (sig !== row.sig && (m.kind !== 'audio' || m.deleted || !bubble.querySelector('.voice')));
      if (rebuild) keepFocus(row.el, () => bubble.replaceWith(bubbleOf(m)));
      else bubble.querySelector('.meta')?.replaceWith(metaOf(m));
      row.sig = sig;
      const tools = line.querySelector('.msg-tools');
      if (actionable(m) && !tools) line.append(toolsFor(keyOf(m)));
      if (!actionable(m) && tools) keepFocus(row.el, () => tools.remove());
      const rsig = reactionSig(m);
      if (rsig !== (row.rsig ?? '')) {
        keepFocus(row.el, () => row.el.querySelector('.reactions')
          .replaceWith(reactionsEl(app, m, (emoji, active, chip) => toggleReaction(keyOf(m), emoji, active, chip))));
      }
      row.rsig = rsig;
    }
    row.el.dataset.id = m.id || '';
    row.el.dataset.status = m.status || '';
    row.msg = m;
  }

  // Puts focus back on the same control (or the nearest one) after a part was rebuilt.
  function keepFocus(rowEl, fn) {
    const a = document.activeElement;
    if (!a || !rowEl.contains(a)) return fn();
    let sel = null;
    if (a.dataset.emoji) sel = `.chip-reaction[data-emoji="${CSS.escape(a.dataset.emoji)}"]`;
    else if (a.dataset.tool) sel = `[data-tool="${a.dataset.tool}"]`;
    else if (a.classList.contains('reply-quote')) sel = '.reply-quote';
    else if (a.classList.contains('media-image')) sel = '.media-image';
    else if (a.classList.contains('file-download')) sel = '.file-download';
    fn();
    if (a.isConnected) return; // not in the part that was rebuilt
    const to = sel && (rowEl.querySelector(sel) || rowEl.querySelector('[data-tool="react"]') || rowEl.querySelector('.chip-reaction'));
    if (to) return to.focus({ preventScroll: true });
    // the row itself keeps the reader's place (focusable from script only)
    if (!rowEl.hasAttribute('tabindex')) rowEl.setAttribute('tabindex', '-1');
    rowEl.focus({ preventScroll: true });
  }

  function place(m, force = false) {
    const key = keyOf(m);
    let row = rows.get(key);
    if (row) {
      updateRow(row, m, force);
      return false;
    }
    row = { el: buildRow(m), msg: m, sig: bodySig(m), rsig: reactionSig(m) };
    rows.set(key, row);
    const sorted = store.sorted();
    const i = sorted.findIndex((x) => keyOf(x) === key);
    let before = null;
    for (let j = i + 1; j < sorted.length; j++) {
      const r = rows.get(keyOf(sorted[j]));
      if (r) {
        before = r.el;
        break;
      }
    }
    list.insertBefore(row.el, before);
    return true;
  }

  function reconcile() {
    // Rows already in place stay put: moving a node would take the focus off it (a
    // message just jumped to, a voice message's controls).
    let at = list.firstChild;
    for (const m of store.sorted()) {
      if (!inView(store, m)) continue;
      const key = keyOf(m);
      let row = rows.get(key);
      if (!row) {
        row = { el: buildRow(m), msg: m, sig: bodySig(m), rsig: reactionSig(m) };
        rows.set(key, row);
      }
      const wasAt = row.el === at;
      if (row.msg !== m || row.el.dataset.status !== (m.status || '')) updateRow(row, m);
      if (wasAt) at = row.el.nextSibling;
      else list.insertBefore(row.el, at);
    }
    decorate();
  }

  // Day separators and bubble grouping, from DOM order.
  function decorate() {
    let prev = null;
    for (const rowEl of list.children) {
      const row = rows.get(rowEl.dataset.key);
      if (!row) continue;
      const m = row.msg;
      const day = new Date(m.createdAt).toDateString();
      const newDay = !prev || new Date(prev.createdAt).toDateString() !== day;
      const sep = rowEl.querySelector('.day-sep');
      if (sep) {
        sep.hidden = !newDay;
        if (newDay) sep.firstChild.textContent = dayLabel(m.createdAt);
      }
      const lone = (x) => x.kind === 'call' || x.kind === 'system';
      const cont = !newDay && prev && !lone(prev) && !lone(m) && prev.senderId === m.senderId
        && new Date(m.createdAt) - new Date(prev.createdAt) < GROUP_GAP_MS;
      rowEl.classList.toggle('cont', !!cont);
      prev = m;
    }
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 140;
  }

  function toBottom() {
    scroller.scrollTop = scroller.scrollHeight;
    unseen = 0;
    jump.hidden = true;
  }

  let unseen = 0;
  function renderTopNote() {
    if (store.loading) topNote.textContent = 'Loading earlier messages…';
    else if (store.nextBefore === null) topNote.textContent = rows.size ? 'This is the beginning of the conversation.' : 'No messages yet. Say hello! 👋';
    else topNote.textContent = '';
    topNote.classList.toggle('loading', !!store.loading);
  }

  async function loadOlder() {
    if (store.loading || store.nextBefore === null) return;
    const older = store.nextBefore !== undefined;
    const prevHeight = scroller.scrollHeight;
    const prevTop = scroller.scrollTop;
    const p = app.loadOlder(chatId);
    renderTopNote();
    try {
      await p;
    } catch (e) {
      topNote.textContent = `Could not load messages: ${e.message}`;
      return;
    }
    reconcile();
    renderTopNote();
    if (older) scroller.scrollTop = prevTop + (scroller.scrollHeight - prevHeight);
    else toBottom();
    app.markReadSoon(chatId);
    // Keep loading while the screen is not full.
    if (store.nextBefore !== null && scroller.scrollHeight <= scroller.clientHeight + 40) loadOlder();
  }

  // A photo opens the viewer, which moves between the photos shown in this chat.
  list.addEventListener('click', (e) => {
    const tile = e.target.closest?.('.media-image');
    if (!tile || !tile.viewerItem) return;
    const tiles = [...list.querySelectorAll('.media-image')].filter((t) => t.viewerItem);
    const rowKey = tile.closest('.msg-row')?.dataset.key;
    openViewer(tiles.map((t) => t.viewerItem), tiles.indexOf(tile), {
      opener: tile,
      fallbackFocus: () => rows.get(rowKey)?.el.querySelector('.media-image') || input,
    });
  });

  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 250) loadOlder();
    if (nearBottom()) {
      unseen = 0;
      jump.hidden = true;
    }
  }, { passive: true });
  jump.addEventListener('click', () => {
    toBottom();
    input.focus();
  });

  offs.push(app.on('message', ({ chatId: c, msg, isNew, own, changed, requote }) => {
    if (c !== chatId) return;
    if (!inView(store, msg)) return outsideWindow(msg, { isNew, own });
    const stick = nearBottom();
    const added = place(msg, !!requote);
    if (mode && mode.msg === msg) onModeMessageChanged();
    if (changed && msg.senderId !== me.id && !added) {
      const who = app.user(msg.senderId)?.username || 'Someone';
      if (msg.deleted) announce(`${who} deleted a message`);
    }
    if (added) {
      decorate();
      renderTopNote();
      if (own || msg.senderId === me.id || stick) toBottom();
      else if (isNew) {
        unseen += 1;
        jump.hidden = false;
        jump.querySelector('.jump-count').textContent = String(unseen);
      }
      if (msg.senderId !== me.id) {
        app.markReadSoon(chatId);
        const who = displayName(app, msg.senderId, chat) || 'Someone';
        if (msg.kind === 'system') return announce(systemText(app, msg, chat));
        const what = msg.deleted ? 'deleted message' : msg.kind === 'audio' ? 'voice message' : msg.kind === 'call' ? callText(msg, me.id)
          : msg.kind === 'image' ? 'photo' : msg.kind === 'file' ? 'file' : msg.encrypted ? 'encrypted message' : msg.content;
        announce(`${who}: ${what}`);
      }
    }
  }));
  offs.push(app.on('history', ({ chatId: c }) => {
    if (c === chatId) renderTopNote();
  }));

  // ---------- a window of older history (after a jump, see jump.js) ----------
  // The view shows the store's messages up to the window's newest; newer pages load
  // as the reader scrolls down; the jump button goes back to the present.

  function rowOf(messageId) {
    const m = store.byId(messageId);
    return (m && rows.get(keyOf(m))?.el) || null;
  }

  function clearRows() {
    rows.clear();
    clear(list);
    unseen = 0;
    jump.querySelector('.jump-count').textContent = '';
  }

  // Waits until no older page is loading, so the store can change runs.
  async function settle() {
    while (store.loading) await store.loading.catch(() => {});
  }

  function renderWindow() {
    const w = windowOf(store);
    bottomNote.textContent = w?.loading ? 'Loading newer messages…' : '';
    bottomNote.classList.toggle('loading', !!w?.loading);
    if (w) jump.hidden = false;
  }

  async function showAround(messageId) {
    await settle();
    await loadAround(store, messageId);
    clearRows();
    reconcile();
    renderTopNote();
    renderWindow();
  }

  async function loadNewerRows() {
    const w = windowOf(store);
    if (!w || w.loading) return;
    const p = loadNewer(store);
    renderWindow();
    try {
      await p;
    } catch (e) {
      bottomNote.textContent = `Could not load messages: ${e.message}`;
      return;
    }
    for (const m of store.sorted()) if (inView(store, m) && !rows.has(keyOf(m))) place(m);
    decorate();
    renderWindow();
    if (windowOf(store) && nearBottom()) loadNewerRows();
  }

  async function backToLatest() {
    await settle();
    leaveWindow(store);
    clearRows();
    jump.hidden = true;
    renderWindow();
    await loadOlder();
  }

  // A message past the window: counted on the jump button; sending one goes back to
  // the present, where it shows.
  function outsideWindow(msg, { isNew, own }) {
    if (own) {
      backToLatest();
      return;
    }
    if (!isNew || msg.senderId === me.id) return;
    unseen += 1;
    jump.hidden = false;
    jump.querySelector('.jump-count').textContent = String(unseen);
    const who = app.user(msg.senderId)?.username || 'Someone';
    announce(`New message from ${who}`);
  }

  scroller.addEventListener('scroll', () => {
    if (!windowOf(store)) return;
    jump.hidden = false;
    if (nearBottom()) loadNewerRows();
  }, { passive: true });
  jump.addEventListener('click', () => {
    if (windowOf(store)) backToLatest();
  });
  offs.push(registerChatView(chatId, { rowOf, settle, showAround }));

  // ---------- typing ----------
  function renderTyping() {
    const who = app.typingIn(chatId);
    if (who.length) {
      typing.textContent = '';
      typing.append(h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
        `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…`);
      typing.classList.add('show');
    } else {
      typing.textContent = '';
      typing.classList.remove('show');
    }
    renderHeader();
  }
  offs.push(app.on('typing', ({ chatId: c }) => c === chatId && renderTyping()));
  offs.push(app.on('presence', () => renderHeader()));
  offs.push(app.on('chats', () => {
    title.textContent = titleText();
  }));
  // the group changed (title, members, roles) or this user was removed from it
  offs.push(app.on('chat-updated', ({ chatId: c }) => {
    if (c !== chatId) return;
    renderHeader();
    scroller.setAttribute('aria-label', `Messages with ${titleText()}`);
    for (const row of rows.values()) if (row.msg.kind === 'system') updateRow(row, row.msg);
    renderState();
  }));
  offs.push(app.on('blocked', () => renderState()));

  // Removed from the group: the history up to the removal stays readable, nothing
  // can be sent. A blocked peer: said above the messages, with the way back.
  function renderState() {
    clear(stateBanner);
    const removed = !!chat.removed;
    el.classList.toggle('read-only', removed);
    form.hidden = removed;
    // nothing to manage or encrypt any more: the details and the lock go too
    infoBtn.hidden = removed;
    lockBtn.hidden = removed;
    if (removed) {
      stopTyping();
      stateBanner.append(h('span', { class: 'icon', html: icons.info }),
        h('div', { class: 'banner-text' }, 'You are no longer a member of this group. You can read its messages up to your removal.'));
      stateBanner.hidden = false;
      return;
    }
    const p = peer();
    if (!isGroup && p && app.isBlocked(p.id)) {
      const name = displayName(app, p.id, chat) || 'this person';
      const unblock = h('button', { type: 'button', class: 'btn small' }, `Unblock ${name}`);
      unblock.addEventListener('click', async () => {
        unblock.disabled = true;
        try {
          await app.unblock(p.id);
          announce(`${name} unblocked`);
          input.focus();
        } catch (e) {
          unblock.disabled = false;
          toast(`Could not unblock ${name}: ${e.message}`, 'error');
        }
      });
      stateBanner.append(h('span', { class: 'icon', html: icons.ban }),
        h('div', { class: 'banner-text' }, `You blocked ${name}. They cannot send you messages or call you.`),
        h('div', { class: 'banner-actions' }, unblock));
      stateBanner.hidden = false;
      return;
    }
    stateBanner.hidden = true;
  }
  offs.push(app.on('encryption', ({ chatId: c }) => {
    if (c === chatId) {
      attach.refresh();
      renderLock();
      renderBanners();
    }
  }));
  offs.push(app.on('keys', () => renderBanners()));
  offs.push(e2ee.onKeyWarning(() => renderBanners()));
  offs.push(app.on('send-error', ({ chatId: c, text }) => {
    if (c !== chatId) return;
    sendError.textContent = text;
    sendError.hidden = false;
    clearTimeout(errTimer);
    errTimer = setTimeout(() => {
      sendError.hidden = true;
    }, 9000);
  }));
  let errTimer;

  let lastTypingSent = 0;
  let typingIdle = null;
  function stopTyping() {
    clearTimeout(typingIdle);
    if (lastTypingSent) {
      app.sendTyping(chatId, false);
      lastTypingSent = 0;
    }
  }
  function syncComposer() {
    const has = input.value.trim().length > 0;
    const editing = mode?.kind === 'edit';
    sendBtn.hidden = !has && recordingSupported() && !editing;
    micBtn.hidden = has || !recordingSupported() || editing;
    attach.button.hidden = editing;
    sendBtn.setAttribute('aria-label', editing ? 'Save edit' : 'Send message');
    input.style.setProperty('height', 'auto');
    input.style.setProperty('height', `${Math.min(input.scrollHeight, 160)}px`);
  }
  input.addEventListener('input', () => {
    syncComposer();
    if (mode?.kind === 'edit') return;
    if (!input.value.trim()) return stopTyping();
    const now = Date.now();
    if (now - lastTypingSent > TYPING_REPEAT_MS) {
      app.sendTyping(chatId, true);
      lastTypingSent = now;
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  input.addEventListener('blur', stopTyping);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === 'Escape' && mode && recState === 'idle') {
      e.preventDefault();
      e.stopPropagation();
      exitMode();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.replace(/\s+$/, '').replace(/^\n+/, '');
    if (mode?.kind === 'edit') return saveEdit(text);
    if (!text.trim()) return;
    sendError.hidden = true;
    const reply = mode?.kind === 'reply' ? mode.msg : null;
    input.value = '';
    if (reply) exitMode({ restoreDraft: false });
    syncComposer();
    stopTyping();
    const ok = await app.sendText(chatId, text, { replyToId: reply?.id });
    if (!ok && !input.value) {
      input.value = text;
      if (reply && !mode) enterMode('reply', reply);
      syncComposer();
    }
    input.focus();
  });

  // ---------- message actions: reply, edit, delete, copy, reactions ----------
  function enterMode(kind, msg) {
    const draft = mode?.kind === 'edit' ? mode.draft : input.value;
    mode = { kind, msg, draft };
    renderMode();
    syncComposer();
  }

  function exitMode({ restoreDraft = true } = {}) {
    if (!mode) return;
    const was = mode;
    mode = null;
    if (was.kind === 'edit' && restoreDraft) input.value = was.draft || '';
    renderMode();
    syncComposer();
  }

  function renderMode() {
    clear(modeBar);
    form.classList.toggle('editing', mode?.kind === 'edit');
    if (!mode) {
      modeBar.hidden = true;
      return;
    }
    const m = mode.msg;
    const editing = mode.kind === 'edit';
    const who = m.senderId === me.id ? 'yourself' : app.user(m.senderId)?.username || 'someone';
    const preview = h('span', { class: 'mode-preview' });
    preview.textContent = plainLine(m, { onText: (t) => { preview.textContent = t; } });
    const cancel = h('button', {
      type: 'button', class: 'icon-btn mode-cancel', 'aria-label': editing ? 'Cancel edit' : 'Cancel reply', html: icons.close,
    });
    cancel.addEventListener('click', () => {
      exitMode();
      input.focus();
    });
    modeBar.append(
      h('span', { class: 'icon mode-icon', html: editing ? icons.edit : icons.reply }),
      h('div', { class: 'mode-text' }, h('strong', {}, editing ? 'Editing message' : `Replying to ${who}`), preview),
      cancel);
    modeBar.setAttribute('aria-label', editing ? 'Editing message' : `Replying to ${who}`);
    modeBar.hidden = false;
  }

  function onModeMessageChanged() {
    if (mode.kind === 'edit' && mode.msg.deleted) {
      exitMode();
      app.emit('send-error', { chatId, text: 'The message you were editing was deleted.' });
      return;
    }
    renderMode();
  }

  function startReply(m) {
    enterMode('reply', m);
    input.focus();
    announce(`Replying to ${m.senderId === me.id ? 'your message' : app.user(m.senderId)?.username || 'message'}`);
  }

  async function startEdit(m) {
    let text = m.content || '';
    if (m.encrypted) {
      try {
        text = await e2ee.decrypt(m);
      } catch {
        toast('This message cannot be decrypted on this device, so it cannot be edited here.', 'error');
        return;
      }
    }
    enterMode('edit', m);
    input.value = text;
    syncComposer();
    input.focus();
    input.setSelectionRange(text.length, text.length);
    announce('Editing message. Escape cancels.');
  }

  let saving = false;
  async function saveEdit(text) {
    const m = mode.msg;
    if (saving) return;
    if (!text.trim()) {
      app.emit('send-error', { chatId, text: 'A message cannot be empty: use “Delete for everyone” instead.' });
      return;
    }
    let before = m.content;
    if (m.encrypted) before = await e2ee.decrypt(m).catch(() => null);
    if (text === before) {
      exitMode();
      input.focus();
      return;
    }
    sendError.hidden = true;
    sendBtn.disabled = true;
    saving = true;
    try {
      await app.editMessage(m, text);
      if (mode?.msg === m) exitMode();
      announce('Message edited');
    } catch (e) {
      app.emit('send-error', { chatId, text: e.message });
    } finally {
      sendBtn.disabled = false;
      saving = false;
    }
    input.focus();
  }

  const busy = new Set(); // `${messageId}|${emoji}` reactions on their way

  function react(m, emoji, active) {
    const k = `${m.id}|${emoji}`;
    if (busy.has(k)) return;
    busy.add(k);
    app.react(m, emoji, active)
      .then(() => announce(active ? `Reacted with ${emoji}` : `Removed ${emoji}`))
      .catch((e) => toast(e.message, 'error'))
      .finally(() => busy.delete(k));
  }

  function toggleReaction(key, emoji, active) {
    const m = rows.get(key)?.msg;
    if (actionable(m)) react(m, emoji, active);
  }

  const toolOf = (key, tool) => () => rows.get(key)?.el.querySelector(`[data-tool="${tool}"]`);

  function openPicker(key, point) {
    const m = rows.get(key)?.msg;
    if (!actionable(m)) return;
    if (!point && popupOwner() === `picker:${key}`) return closePopup(); // the button toggles it
    const chosen = new Set((m.reactions || []).filter((r) => (r.userIds || []).includes(me.id)).map((r) => r.emoji));
    const btn = toolOf(key, 'react');
    btn()?.setAttribute('aria-expanded', 'true');
    openReactionPicker({
      chosen,
      anchor: point ? null : btn,
      point,
      returnFocus: () => btn() || toolOf(key, 'menu')() || input,
      onPick: (emoji, active) => react(m, emoji, active),
      onClose: () => btn()?.setAttribute('aria-expanded', 'false'),
      owner: `picker:${key}`,
    });
  }

  function openActions(key, point) {
    const row = rows.get(key);
    const m = row?.msg;
    if (!actionable(m)) return;
    if (!point && popupOwner() === `menu:${key}`) return closePopup(); // the button toggles it
    const btn = toolOf(key, 'menu');
    const items = [{ label: 'Reply', icon: icons.reply, run: () => startReply(m) }];
    if (app.canEdit(m)) items.push({ label: 'Edit', icon: icons.edit, run: () => startEdit(m) });
    if (m.kind === 'text') items.push({ label: 'Copy', icon: icons.copy, run: () => copyText(m) });
    if (isMediaKind(m.kind)) {
      // the photo's or the file's own save (decrypting an encrypted one)
      const tile = row.el.querySelector('.media-image');
      const fileBtn = row.el.querySelector('.file-download');
      if (tile?.viewerItem) {
        items.push({ label: 'Download', icon: icons.download, run: () => tile.viewerItem.save().catch((e) => toast(`Could not download: ${e.message || e}`, 'error')) });
      } else if (fileBtn) items.push({ label: 'Download', icon: icons.download, run: () => fileBtn.click() });
    }
    items.push({ label: 'React', icon: icons.smile, popup: true, run: () => openPicker(key, point) });
    if (m.senderId === me.id) {
      items.push({ label: 'Delete for everyone', icon: icons.trash, danger: true, keepFocus: true, run: () => confirmDelete(key) });
    }
    btn()?.setAttribute('aria-expanded', 'true');
    row.el.classList.add('menu-open');
    openMenu({
      label: 'Message actions',
      owner: `menu:${key}`,
      items,
      anchor: point ? null : btn,
      point,
      returnFocus: () => btn() || input,
      onClose: () => {
        btn()?.setAttribute('aria-expanded', 'false');
        rows.get(key)?.el.classList.remove('menu-open');
      },
    });
  }

  async function copyText(m) {
    let text = m.content || '';
    if (m.encrypted) text = await e2ee.decrypt(m).catch(() => null);
    if (text === null) return toast('This message cannot be decrypted on this device.', 'error');
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // no clipboard permission (or an old browser): the selection way
      const ta = h('textarea', { class: 'sr-only', 'aria-hidden': 'true', readonly: true });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      const ok = document.execCommand?.('copy');
      ta.remove();
      if (!ok) return toast('Could not copy to the clipboard.', 'error');
    }
    toast('Copied to the clipboard.', 'ok', 2000);
  }

  async function confirmDelete(key) {
    const m = rows.get(key)?.msg;
    if (!actionable(m)) return;
    const ok = await confirmDialog('Delete this message for everyone? It will be removed for every member of this chat. This cannot be undone.', 'Delete');
    if (ok) {
      try {
        await app.deleteMessage(m);
        announce('Message deleted');
      } catch (e) {
        toast(e.message, 'error');
      }
    }
    (toolOf(key, 'menu')() || input).focus({ preventScroll: true });
  }

  // Jumps to the quoted original (views/jump.js loads the history around it when it
  // is not in the view).
  function jumpTo(messageId) {
    jumpToMessage(chatId, messageId);
  }

  // ---------- voice recording ----------
  let rec = null;
  let recState = 'idle'; // idle | starting | holding | locked
  let recRaf = 0;
  let downAt = 0;
  let downX = 0;
  let releaseWhileStarting = null; // 'send' | 'lock' | 'cancel'

  async function startRecording() {
    if (recState !== 'idle') return;
    recState = 'starting';
    releaseWhileStarting = null;
    rec = new Recorder();
    try {
      await rec.start();
    } catch (e) {
      recState = 'idle';
      rec = null;
      toast(e?.name === 'NotAllowedError' ? 'Microphone permission was denied.' : `Cannot record: ${e.message || e}`, 'error');
      return;
    }
    recState = 'holding';
    recorderBar.hidden = false;
    form.classList.add('recording');
    recHint.textContent = app.isEncrypted(chatId)
      ? 'Voice messages are not end-to-end encrypted · release to send'
      : 'Release to send · slide left or Esc to cancel';
    announce('Recording voice message');
    const tick = () => {
      if (!rec) return;
      recTime.textContent = duration(rec.elapsedMs());
      const level = rec.level();
      bars.push(bars.shift());
      const b = bars[bars.length - 1];
      b.style.setProperty('transform', `scaleY(${Math.max(0.08, level).toFixed(3)})`);
      meter.append(b);
      recRaf = requestAnimationFrame(tick);
    };
    recRaf = requestAnimationFrame(tick);
    if (releaseWhileStarting) {
      const action = releaseWhileStarting;
      releaseWhileStarting = null;
      if (action === 'cancel') cancelRecording();
      else if (action === 'send') finishRecording();
      else lockRecording();
    }
  }

  function lockRecording() {
    recState = 'locked';
    form.classList.add('locked');
    recHint.textContent = 'Recording… press send when done';
    recSend.focus();
  }

  function endRecordingUi() {
    cancelAnimationFrame(recRaf);
    recorderBar.hidden = true;
    form.classList.remove('recording', 'locked');
    recTime.textContent = '0:00';
    bars.forEach((b) => b.style.setProperty('transform', 'scaleY(0.08)'));
    recState = 'idle';
  }

  function cancelRecording() {
    if (recState === 'starting') {
      releaseWhileStarting = 'cancel';
      return;
    }
    if (!rec) return;
    rec.cancel();
    rec = null;
    endRecordingUi();
    announce('Recording cancelled');
    micBtn.focus();
  }

  async function finishRecording() {
    if (recState === 'starting') {
      releaseWhileStarting = 'send';
      return;
    }
    if (!rec) return;
    const r = rec;
    rec = null;
    endRecordingUi();
    const { blob, durationMs } = await r.stop();
    if (durationMs < 400 || !blob.size) {
      toast('Too short — hold the microphone button to record.', 'info');
      return;
    }
    app.uploadAndSend(chatId, blob, durationMs);
    micBtn.focus();
  }

  function press(x) {
    downAt = performance.now();
    downX = x;
    if (recState === 'idle') startRecording();
  }

  function release() {
    if (recState === 'locked' || recState === 'idle') return;
    const held = performance.now() - downAt;
    if (held < HOLD_MS) {
      // a tap: keep recording hands-free with explicit send / cancel buttons
      if (recState === 'starting') releaseWhileStarting = 'lock';
      else lockRecording();
    } else finishRecording();
  }

  micBtn.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    micBtn.setPointerCapture?.(e.pointerId);
    if (recState === 'locked') return;
    press(e.clientX);
  });
  micBtn.addEventListener('pointermove', (e) => {
    if ((recState === 'holding' || recState === 'starting') && downX - e.clientX > 90) cancelRecording();
  });
  micBtn.addEventListener('pointerup', () => release());
  micBtn.addEventListener('pointercancel', () => {
    if (recState !== 'locked') cancelRecording();
  });
  micBtn.addEventListener('contextmenu', (e) => e.preventDefault());
  micBtn.addEventListener('keydown', (e) => {
    if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) {
      e.preventDefault();
      press(0);
    }
  });
  micBtn.addEventListener('keyup', (e) => {
    if (e.key === ' ' || e.key === 'Enter') {
      e.preventDefault();
      release();
    }
  });
  micBtn.addEventListener('click', (e) => e.preventDefault());
  recCancel.addEventListener('click', cancelRecording);
  recSend.addEventListener('click', finishRecording);
  const onKey = (e) => {
    if (e.key === 'Escape' && recState !== 'idle') {
      e.preventDefault();
      cancelRecording();
    }
  };
  document.addEventListener('keydown', onKey);
  offs.push(() => document.removeEventListener('keydown', onKey));

  // ---------- header actions ----------
  lockBtn.addEventListener('click', () => {
    const on = !app.isEncrypted(chatId);
    app.setEncrypted(chatId, on);
    announce(on ? 'Encryption on' : 'Encryption off');
    toast(on ? 'End-to-end encryption is on for new messages in this chat.' : 'Encryption is off for this chat.', on ? 'ok' : 'info');
  });
  infoBtn.addEventListener('click', () => chatInfoDialog(app, chat));
  callBtn?.addEventListener('click', () => {
    const p = peer();
    if (p) calls.start(chat, p);
  });

  const clock = setInterval(renderHeader, 30000);
  offs.push(() => clearInterval(clock));

  // ---------- start ----------
  renderHeader();
  renderLock();
  renderBanners();
  renderState();
  if (!isGroup) app.loadBlockedIds().then(() => renderState(), () => {});
  renderTyping();
  syncComposer();
  const p = peer();
  if (p && p.hasPublicKey) e2ee.publicKeyOf(p.id).catch(() => {});
  // Coming back to a chat shows the present, not the window a jump left.
  if (windowOf(store)) leaveWindow(store);
  if (store.nextBefore === undefined) {
    loadOlder();
  } else {
    reconcile();
    renderTopNote();
    requestAnimationFrame(toBottom);
  }

  el.focusComposer = () => input.focus();
  el.destroy = () => {
    search.destroy();
    attach.destroy();
    closeViewer();
    stopTyping();
    if (rec) cancelRecording();
    offs.forEach((f) => f());
    for (const a of list.querySelectorAll('.voice')) a.media?.pause();
  };
  return el;
}

export { icon };
