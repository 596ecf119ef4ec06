// The chat list with people search, the new-group button and the account menu.

import { h, clear, icon, icons, avatar, listTime, toast } from '../ui.js';
import * as e2ee from '../e2ee.js';
import { newGroupDialog } from './dialogs.js';
import { openMenu, closePopup, popupOwner } from './message-actions.js';
import { systemText } from './system.js';
import { mediaLine } from './media-parts.js';

export function callText(msg, meId) {
  let c = {};
  try {
    c = typeof msg.content === 'string' ? JSON.parse(msg.content) : msg.content || {};
  } catch {
    /* not JSON */
  }
  const kind = c.video === false ? 'voice call' : 'video call';
  const Kind = kind[0].toUpperCase() + kind.slice(1);
  const mine = c.callerId === meId;
  const dur = Number(c.durationMs);
  const d = Number.isFinite(dur) && dur > 0 ? ` · ${fmt(dur)}` : '';
  switch (c.outcome) {
    case 'ended':
      return d ? `Call ended${d}` : `${Kind} ended`;
    case 'disconnected':
      return d ? `Call ended${d}` : `${Kind} failed`;
    case 'rejected':
      return mine ? `Call rejected` : `Declined ${kind}`;
    case 'timeout':
      return mine ? `${Kind} · no answer` : `Missed ${kind}`;
    case 'cancelled':
      return mine ? `Cancelled ${kind}` : `Missed ${kind}`;
    case 'answered_elsewhere':
      return `${Kind} answered on another device`;
    case 'busy':
      return mine ? `${Kind} · busy` : `Missed ${kind}`;
    default:
      return d ? `${Kind}${d}` : Kind;
  }
}

function fmt(ms) {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

export function previewText(app, msg) {
  if (!msg) return '';
  if (msg.deleted) return '🚫 Message deleted';
  if (msg.kind === 'call') return `📹 ${callText(msg, app.me?.id)}`;
  if (msg.kind === 'system') return systemText(app, msg);
  if (msg.kind === 'audio') return '🎤 Voice message';
  if (msg.kind === 'image' || msg.kind === 'file') return mediaLine(msg);
  if (msg.encrypted) return '🔒 Encrypted message';
  return msg.content;
}

export function tickIcon(status) {
  return { pending: 'clock', sent: 'check', delivered: 'checks', read: 'checks', failed: 'alert' }[status] || 'check';
}

export const STATUS_LABEL = { pending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' };

export function sidebarView(app, navigate) {
  const me = app.me;
  const status = h('span', { class: 'me-status' }, 'Connecting…');
  const groupBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'New group', title: 'New group', html: icons.group });
  // The account menu: settings and signing out.
  const menuBtn = h('button', {
    type: 'button', class: 'icon-btn', 'aria-label': 'Account menu', title: 'Account', 'aria-haspopup': 'menu', 'aria-expanded': 'false', html: icons.more,
  });
  const search = h('input', {
    id: 'user-search', type: 'search', placeholder: 'Search people by name or email', autocomplete: 'off',
    'aria-controls': 'search-results', spellcheck: 'false', autocapitalize: 'off',
  });
  const results = h('div', { id: 'search-results', class: 'search-results', hidden: true, 'aria-live': 'polite' });
  const list = h('ul', { class: 'chat-list', role: 'list', 'aria-label': 'Conversations' });
  const empty = h('div', { class: 'empty-list', hidden: true },
    h('div', { class: 'empty-art', html: icons.chat }),
    h('p', {}, h('strong', {}, 'No conversations yet')),
    h('p', { class: 'muted' }, 'Search for someone by username or email to start chatting.'));

  const el = h('aside', { class: 'sidebar', 'aria-label': 'Chats' },
    h('header', { class: 'side-head' },
      avatar(me.username, me.id, { size: 'sm' }),
      h('div', { class: 'me' }, h('span', { class: 'me-name' }, me.username), status),
      h('div', { class: 'head-actions' }, groupBtn, menuBtn)),
    h('div', { class: 'search' },
      h('label', { class: 'sr-only', for: 'user-search' }, 'Search people'),
      icon('search', 'search-icon'),
      search),
    results,
    h('nav', { class: 'chat-scroll', 'aria-label': 'Conversations' }, list, empty));

  groupBtn.addEventListener('click', () => newGroupDialog(app, navigate));
  menuBtn.addEventListener('click', () => {
    if (popupOwner() === 'account-menu') return closePopup(); // the button toggles it
    menuBtn.setAttribute('aria-expanded', 'true');
    openMenu({
      label: 'Account',
      owner: 'account-menu',
      anchor: () => menuBtn,
      returnFocus: () => menuBtn,
      onClose: () => menuBtn.setAttribute('aria-expanded', 'false'),
      items: [
        { label: 'Settings', icon: icons.settings, keepFocus: true, run: () => navigate('/settings') },
        { label: 'Sign out', icon: icons.logout, keepFocus: true, run: () => app.logout() },
      ],
    });
  });

  // ----- search -----
  let ctrl = null;
  let timer = null;
  const runSearch = () => {
    const q = search.value.trim();
    ctrl?.abort();
    if (q.length < 2) {
      results.hidden = true;
      clear(results);
      el.classList.remove('searching');
      return;
    }
    el.classList.add('searching');
    ctrl = new AbortController();
    const mine = ctrl;
    app.searchUsers(q, mine.signal)
      .then((users) => {
        if (mine !== ctrl) return;
        clear(results);
        results.hidden = false;
        results.append(h('h2', { class: 'section-title' }, 'People'));
        if (!users.length) {
          results.append(h('p', { class: 'muted pad' }, `No one matches “${q}”.`));
          return;
        }
        const ul = h('ul', { role: 'list' });
        for (const u of users) {
          const b = h('button', { type: 'button', class: 'person', dataset: { userId: u.id } },
            avatar(u.username, u.id, { online: !!u.online }),
            h('span', { class: 'person-name' }, u.username),
            h('span', { class: 'person-sub muted' }, u.online ? 'online' : 'Start a conversation'));
          b.addEventListener('click', async () => {
            b.disabled = true;
            try {
              const chat = await app.openDirect(u.id);
              search.value = '';
              runSearch();
              navigate(`/chat/${chat.id}`);
            } catch (e) {
              toast(`Could not open the chat: ${e.message}`, 'error');
            } finally {
              b.disabled = false;
            }
          });
          ul.append(h('li', {}, b));
        }
        results.append(ul);
      })
      .catch((e) => {
        if (e.name !== 'AbortError' && mine === ctrl) {
          clear(results);
          results.hidden = false;
          results.append(h('p', { class: 'muted pad' }, e.message));
        }
      });
  };
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(runSearch, 220);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      search.value = '';
      runSearch();
    } else if (e.key === 'ArrowDown') {
      const first = results.querySelector('button');
      if (first) {
        e.preventDefault();
        first.focus();
      }
    }
  });
  results.addEventListener('keydown', (e) => {
    const buttons = [...results.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (e.key === 'ArrowDown' && i >= 0 && i < buttons.length - 1) {
      e.preventDefault();
      buttons[i + 1].focus();
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      (i > 0 ? buttons[i - 1] : search).focus();
    } else if (e.key === 'Escape') {
      search.value = '';
      runSearch();
      search.focus();
    }
  });

  // ----- list -----
  const decrypted = new Map();
  function preview(chat) {
    const last = chat.localLast && (!chat.lastMessage || new Date(chat.localLast.createdAt) >= new Date(chat.lastMessage.createdAt)) ? chat.localLast : chat.lastMessage;
    if (!last) return { text: chat.kind === 'group' ? 'Group created' : 'No messages yet', msg: null };
    let text = previewText(app, last);
    if (last.encrypted && last.e2ee) {
      const k = `${last.chatId}:${last.senderId}:${last.clientId}:${last.e2ee.iv}`; // an edit brings a new iv
      // an attachment's plaintext is JSON: its caption or its kind is what shows
      if (decrypted.has(k)) text = `🔒 ${last.kind === 'image' || last.kind === 'file' ? mediaLine(last, decrypted.get(k)) : decrypted.get(k)}`;
      else {
        e2ee.decrypt(last).then((t) => {
          decrypted.set(k, t);
          render();
        }, () => {});
      }
    }
    if (chat.kind === 'group' && last.senderId !== me.id && last.kind !== 'call' && last.kind !== 'system') {
      text = `${app.user(last.senderId)?.username || 'Someone'}: ${text}`;
    }
    return { text, msg: last };
  }

  // ----- older pages: loaded as the end of the list scrolls into view -----
  const more = h('button', { type: 'button', class: 'btn chat-more-btn' }, 'Show older conversations');
  const moreItem = h('li', { class: 'chat-more' }, more);
  const loadMore = () => {
    if (more.disabled || !app.hasMoreChats()) return;
    more.disabled = true;
    more.textContent = 'Loading…';
    app.loadMoreChats()
      .catch((e) => toast(`Could not load more conversations: ${e.message}`, 'error'))
      .finally(() => {
        more.disabled = false;
        more.textContent = 'Show older conversations';
        render();
      });
  };
  more.addEventListener('click', loadMore);
  const scroller = el.querySelector('.chat-scroll');
  const watcher = 'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { root: scroller, rootMargin: '0px 0px 200px 0px' })
    : null;

  // ----- leaving a group -----
  async function leave(chat, title) {
    if (chat.removed) {
      // removed by an admin: nothing to leave on the server, only this list to tidy
      app.forgetChat(chat.id);
      return;
    }
    if (!window.confirm(`Leave “${title}”? You will no longer get its messages or see its history.`)) return;
    try {
      await app.leaveGroup(chat.id);
      toast(`You left “${title}”.`);
    } catch (e) {
      toast(`Could not leave the group: ${e.message}`, 'error');
    }
  }

  function render() {
    const focusedId = document.activeElement?.closest?.('.chat-item')?.dataset.chatId;
    watcher?.disconnect();
    clear(list);
    const chats = app.sortedChats();
    empty.hidden = chats.length > 0;
    for (const chat of chats) {
      const peer = app.peerOf(chat);
      const title = app.chatTitle(chat);
      const { text, msg } = preview(chat);
      const unread = chat.unreadCount || 0;
      const typing = app.typingIn(chat.id);
      const active = app.activeChatId === chat.id;
      const own = msg && msg.senderId === me.id && msg.kind !== 'call' && msg.kind !== 'system';
      const a = h('a', {
        href: `/chat/${chat.id}`, class: `chat-item${active ? ' active' : ''}${unread ? ' unread' : ''}`,
        'data-link': true, dataset: { chatId: chat.id }, 'aria-current': active ? 'page' : undefined,
      },
      chat.kind === 'group' ? avatar(title, chat.id + 1000) : avatar(title, peer?.id, { online: !!peer?.online }),
      h('div', { class: 'chat-main' },
        h('div', { class: 'chat-row' },
          h('span', { class: 'chat-name' }, chat.kind === 'group' ? icon('group', 'tiny') : null, title),
          app.isEncrypted(chat.id) ? icon('lock', 'tiny lock-mark') : null,
          chat.muted ? h('span', { class: 'icon tiny muted-mark', title: 'Muted', html: icons.bellOff }) : null,
          h('time', { class: 'chat-time', datetime: msg?.createdAt || chat.createdAt }, listTime(msg?.createdAt || chat.createdAt))),
        h('div', { class: 'chat-row' },
          typing.length
            ? h('span', { class: 'preview typing-preview' }, chat.kind === 'group' ? `${typing[0]} is typing…` : 'typing…')
            : h('span', { class: 'preview' },
              own ? h('span', { class: `ticks s-${msg.status}`, html: icons[tickIcon(msg.status)] }) : null,
              text),
          unread ? h('span', { class: 'badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)) : null,
          h('span', { class: 'sr-only' }, [unread ? `, ${unread} unread` : '', peer?.online ? ', online' : '', chat.muted ? ', muted' : ''].join('')))));
      const li = h('li', { class: chat.kind === 'group' ? 'has-actions' : undefined }, a);
      if (chat.kind === 'group') {
        const leaveBtn = h('button', {
          type: 'button', class: 'icon-btn chat-leave', title: chat.removed ? 'Remove from the list' : 'Leave group',
          'aria-label': chat.removed ? `Remove ${title} from the list` : `Leave group ${title}`, html: chat.removed ? icons.close : icons.logout,
        });
        leaveBtn.addEventListener('click', () => leave(chat, title));
        li.append(leaveBtn);
      }
      list.append(li);
    }
    if (app.hasMoreChats()) {
      list.append(moreItem);
      watcher?.observe(moreItem);
    }
    if (focusedId) list.querySelector(`[data-chat-id="${focusedId}"]`)?.focus();
  }

  function setConn(state) {
    const text = { ready: 'online', open: 'connecting…', connecting: 'connecting…', reconnecting: 'reconnecting…', stopped: 'offline' }[state] || state;
    status.textContent = text;
    status.classList.toggle('ok', state === 'ready');
  }

  const offs = [
    app.on('chats', render),
    app.on('chat-removed', ({ chatId }) => {
      if (app.activeChatId === chatId) navigate('/', { replace: true });
    }),
    app.on('typing', render),
    app.on('encryption', render),
    app.on('connection', setConn),
  ];
  setConn(app.socket.state);
  render();
  el.destroy = () => {
    watcher?.disconnect();
    offs.forEach((f) => f());
  };
  el.focusSearch = () => search.focus();
  return el;
}
