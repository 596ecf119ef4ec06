// The parts of a message row that answer, react and act: the quote of the message it
// replies to, the reaction chips under the bubble, and the "React" / "Message actions"
// buttons beside it. chat.js puts them together and keeps them current.

import { h, icons } from '../ui.js';
import * as e2ee from '../e2ee.js';
import { isMediaKind, mediaLine } from './media-parts.js';

export const DELETED_TEXT = 'Message deleted';
const QUOTE_CHARS = 120;

/** Whether a message can be answered, reacted to or otherwise acted on. */
export function actionable(m) {
  return !!m && !!m.id && !m.deleted && m.kind !== 'call' && m.kind !== 'system';
}

/** A short plain-text line for a message (composer bar, quotes); decrypts our own copy. */
export function plainLine(m, { onText } = {}) {
  if (!m) return '';
  if (m.deleted) return DELETED_TEXT;
  if (m.kind === 'audio') return '🎤 Voice message';
  if (m.kind === 'call') return '📹 Call';
  if (isMediaKind(m.kind)) {
    if (m.encrypted) e2ee.decrypt(m).then((t) => onText?.(mediaLine(m, t).slice(0, QUOTE_CHARS)), () => onText?.('🔒 Cannot decrypt this message on this device'));
    return mediaLine(m).slice(0, QUOTE_CHARS);
  }
  if (!m.encrypted) return String(m.content || '').slice(0, QUOTE_CHARS);
  e2ee.decrypt(m).then((t) => onText?.(t.slice(0, QUOTE_CHARS)), () => onText?.('🔒 Cannot decrypt this message on this device'));
  return '🔒 Decrypting…';
}

/**
 * The quote of `m.replyTo`. The server's preview serves for a plaintext original;
 * an encrypted one (preview null) shows our own decrypted copy when it is loaded.
 */
export function quoteEl(app, store, m, onJump) {
  const q = m.replyTo;
  if (!q) return null;
  const orig = store.byId(q.id);
  const name = q.senderId === app.me.id ? 'You' : app.user(q.senderId)?.username || (q.senderId ? 'Someone' : '');
  const text = h('span', { class: 'quote-text' });
  if (q.deleted || orig?.deleted) {
    text.textContent = DELETED_TEXT;
    text.classList.add('deleted');
  } else if (orig && (orig.kind === 'text' || isMediaKind(orig.kind))) {
    text.textContent = plainLine(orig, { onText: (t) => { text.textContent = t; } });
  } else if (q.preview != null) {
    text.textContent = q.preview;
  } else if (q.kind === 'audio') {
    text.textContent = '🎤 Voice message';
  } else if (isMediaKind(q.kind)) {
    text.textContent = q.kind === 'image' ? '📷 Photo' : '📎 File';
  } else if (q.kind === 'call') {
    text.textContent = '📹 Call';
  } else {
    text.textContent = '🔒 Encrypted message';
  }
  const btn = h('button', { type: 'button', class: 'reply-quote', title: 'Show the original message', dataset: { replyTo: q.id } },
    h('span', { class: 'sr-only' }, 'In reply to '),
    h('span', { class: 'quote-sender' }, name),
    h('span', { class: 'sr-only' }, ': '),
    text);
  btn.addEventListener('click', (e) => {
    e.stopPropagation();
    onJump(q.id);
  });
  return btn;
}

/** Chips "👍 2" under the bubble; pressed when we reacted. */
export function reactionsEl(app, m, onToggle) {
  const list = (m.deleted ? [] : m.reactions || []).filter((r) => r.count > 0);
  const box = h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions', hidden: !list.length });
  for (const r of list) {
    const ids = r.userIds || [];
    const mine = ids.includes(app.me.id);
    const names = ids.map((id) => (id === app.me.id ? 'you' : app.user(id)?.username || 'someone'));
    const more = r.count - names.length;
    const chip = h('button', {
      type: 'button', class: `chip-reaction${mine ? ' mine' : ''}`, 'aria-pressed': String(mine),
      title: `${names.join(', ')}${more > 0 ? ` and ${more} more` : ''} · ${mine ? 'click to remove yours' : 'click to add yours'}`,
      dataset: { emoji: r.emoji },
    }, h('span', { class: 'chip-emoji' }, r.emoji), ' ', h('span', { class: 'chip-count' }, String(r.count)));
    chip.addEventListener('click', () => onToggle(r.emoji, !mine, chip));
    box.append(chip);
  }
  return box;
}

export function reactionSig(m) {
  if (m.deleted) return '';
  return (m.reactions || []).map((r) => `${r.emoji}:${r.count}:${(r.userIds || []).join(',')}`).join('|');
}

/** The two buttons beside a bubble: React (the picker) and Message actions (the menu). */
export function toolsEl({ onReact, onMenu }) {
  const react = h('button', {
    type: 'button', class: 'icon-btn msg-tool', 'aria-label': 'React', title: 'React', 'aria-expanded': 'false',
    html: icons.smile, dataset: { tool: 'react' },
  });
  const menu = h('button', {
    type: 'button', class: 'icon-btn msg-tool', 'aria-label': 'Message actions', title: 'Message actions',
    'aria-haspopup': 'menu', 'aria-expanded': 'false', html: icons.more, dataset: { tool: 'menu' },
  });
  react.addEventListener('click', (e) => {
    e.stopPropagation();
    onReact();
  });
  menu.addEventListener('click', (e) => {
    e.stopPropagation();
    onMenu();
  });
  return h('div', { class: 'msg-tools' }, react, menu);
}
