// Application state and the realtime logic: chats, messages, receipts, presence,
// typing, the outbox, sync after reconnect. Views listen to the events it emits.

import { api, get, post, del, patch, setToken, setUnauthorizedHandler, ApiError } from './api.js';
import { Socket } from './socket.js';
import * as e2ee from './e2ee.js';
import { rememberDuration } from './voice.js';
import { toast, announce } from './ui.js';
import { disablePush } from './pwa.js';
import { isDeletedUser, DELETED_NAME, systemContent } from './views/system.js';
import { ChangeCursor, withDefaults, mergeCopy, applyEdit, applyDelete, applyReaction, refreshQuotes } from './changes.js';

const TOKEN_KEY = 'parley:token';
const STATUS_RANK = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };
const RETRYABLE = new Set(['disconnected', 'timeout', 'stopped', 'rate_limited', 'unavailable', 'internal']);
const PAGE = 50;
// The server's edit window (messages.edit_window_secs, 48 h by default); the server
// has the final word, this only decides whether the menu offers "Edit".
export const EDIT_WINDOW_MS = 48 * 3600 * 1000;
const ACTION_ERRORS = {
  edit_window_closed: 'This message can no longer be edited (more than 48 hours old).',
  message_deleted: 'This message was deleted.',
  too_many_reactions: 'You can add at most 8 different reactions to a message.',
  forbidden: 'You cannot change this message.',
  disconnected: 'You are offline; try again when the connection is back.',
  stopped: 'You are offline; try again when the connection is back.',
  timeout: 'The server did not answer in time; try again.',
  rate_limited: 'Too many actions at once; wait a moment and try again.',
};
const CHAT_PAGE = 50; // chats per page of the list (the server allows 1..200)
// What the sign-in page says after a sign-out this device did not ask for.
export const NOTICE_REVOKED = 'You were signed out. Sign in again to continue.';
const NOTICE_EXPIRED = 'Your session has expired. Please sign in again.';
const LOGOUT_TIMEOUT_MS = 3000;

export const keyOf = (m) => `${m.senderId}|${m.clientId}`;

/** The messages of one open chat, keyed by sender and client id so nothing shows twice. */
export class ChatStore {
  constructor(chatId) {
    this.chatId = chatId;
    this.byKey = new Map();
    this.keyById = new Map();
    this.nextBefore = undefined; // undefined: not loaded; null: no older history
    this.loading = null;
    this.readSent = 0;
    this.readUpTo = new Map(); // group receipts: userId -> highest read id
    this.deliveredTo = new Map(); // group receipts: message id -> Set(userId)
  }

  get(key) {
    return this.byKey.get(key);
  }

  byId(id) {
    const k = this.keyById.get(Number(id));
    return k ? this.byKey.get(k) : undefined;
  }

  /** Adds or merges a message. Returns `{msg, isNew}`. */
  upsert(incoming) {
    // A deleted message comes without its client id: find it by id when we have it.
    const known = incoming.id ? this.keyById.get(Number(incoming.id)) : undefined;
    const key = known || keyOf(withDefaults(incoming));
    const existing = this.byKey.get(key);
    if (!existing) {
      const msg = withDefaults(incoming);
      this.byKey.set(key, msg);
      if (msg.id) this.keyById.set(Number(msg.id), key);
      return { msg, isNew: true };
    }
    const before = existing.status;
    const local = { localSeq: existing.localSeq, localAudio: existing.localAudio, error: existing.error };
    mergeCopy(existing, incoming);
    if (incoming.id) {
      existing.error = null;
      if (local.localAudio && !existing.deleted) existing.localAudio = local.localAudio;
      if (before && STATUS_RANK[before] > (STATUS_RANK[incoming.status] ?? 0)) existing.status = before;
    }
    existing.localSeq = local.localSeq;
    if (existing.id) this.keyById.set(Number(existing.id), key);
    return { msg: existing, isNew: false };
  }

  sorted() {
    return [...this.byKey.values()].sort((a, b) => {
      if (a.id && b.id) return a.id - b.id;
      if (a.id) return -1;
      if (b.id) return 1;
      return (a.localSeq || 0) - (b.localSeq || 0);
    });
  }

  maxIdFrom(predicate) {
    let max = 0;
    for (const m of this.byKey.values()) if (m.id && m.id > max && predicate(m)) max = m.id;
    return max;
  }
}

export class App extends EventTarget {
  constructor() {
    super();
    this.token = null;
    this.me = null;
    this.chats = new Map();
    this.users = new Map();
    this.stores = new Map();
    this.typing = new Map(); // chatId -> Map(userId -> timeout)
    this.outbox = new Map(); // clientId -> { frame, chatId, inFlight }
    this.maxSeenId = 0;
    this.activeChatId = null;
    this.chatsLoaded = false;
    this.everReady = false;
    this.deliverQueue = new Set();
    this.deliverTimer = null;
    this.localSeq = 0;
    this.changes = new ChangeCursor();
    this.socket = new Socket(() => this.token, () => this.checkAuth());
    this.wireSocket();
    setUnauthorizedHandler((code) => this.sessionExpired(code));
    this.socket.addEventListener('revoked', () => this.sessionExpired('session_revoked'));
    this.notice = null; // for the sign-in page: why this device was signed out
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.activeChatId) this.markRead(this.activeChatId);
    });
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  on(name, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(name, h);
    return () => this.removeEventListener(name, h);
  }

  user(id) {
    return this.users.get(Number(id));
  }

  // ---------- session ----------

  savedToken() {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  /** Restores a saved session. Resolves true when signed in. */
  async restore() {
    const token = this.savedToken();
    if (!token) return false;
    this.token = token;
    setToken(token);
    for (let attempt = 0; ; attempt++) {
      try {
        const me = await get('/api/users/me');
        await this.begin(token, me);
        return true;
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          this.clearSession();
          if (e.code === 'session_revoked') this.notice = NOTICE_REVOKED;
          return false;
        }
        if (attempt >= 2 || !navigator.onLine) throw e;
        await new Promise((r) => setTimeout(r, 800 * (attempt + 1)));
      }
    }
  }

  async login(login, password) {
    const res = await post('/api/auth/login', { email: login, password });
    await this.begin(res.token, res.user);
  }

  async register(email, username, password, invite = null) {
    const body = { email, username, password };
    if (invite) body.invite = invite;
    const res = await post('/api/auth/register', body);
    await this.begin(res.token, res.user);
  }

  async begin(token, me) {
    this.notice = null;
    this.token = token;
    setToken(token);
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      /* private mode */
    }
    this.me = me;
    this.users.set(me.id, { ...me, online: true });
    this.changes.load(me.id);
    this.loadOutbox();
    e2ee.init(me).catch((e) => {
      console.warn('encryption keys', e);
      toast('Could not set up encryption keys on this device.', 'warn');
    });
    await this.loadChats();
    this.socket.start();
    this.emit('session', me);
  }

  /**
   * Signs this device out: the server revokes this session (so the token is dead even
   * if someone copied it), then the local state goes. Offline, the local sign-out
   * still happens; the session then lapses on the server with its token.
   */
  async logout() {
    if (this.token) {
      // this device's push subscription goes first, while the token still works
      await disablePush().catch(() => {});
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), LOGOUT_TIMEOUT_MS);
      await post('/api/auth/logout', undefined, { signal: ctrl.signal }).catch(() => {});
      clearTimeout(timer);
    }
    this.clearSession();
    this.emit('signedout');
  }

  /**
   * The server no longer accepts this session: revoked (signed out from another
   * device, a password change, the account disabled or deleted) or expired. The
   * token is dropped at once, so nothing retries with it.
   */
  sessionExpired(code) {
    if (!this.token) return;
    this.clearSession();
    // the server dropped the subscription with the session; the browser forgets it too
    disablePush({ local: true }).catch(() => {});
    this.notice = code === 'session_revoked' ? NOTICE_REVOKED : NOTICE_EXPIRED;
    this.emit('signedout');
  }

  /** Takes the notice for the sign-in page (once). */
  takeNotice() {
    const n = this.notice;
    this.notice = null;
    return n;
  }

  /** Replaces this device's token (the server may issue a new one, e.g. on a password change). */
  adoptToken(token) {
    if (!token) return;
    this.token = token;
    setToken(token);
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      /* private mode */
    }
  }

  // ---------- account: sessions, password, deletion, export, blocking ----------

  /** `[{id, device, createdAt, lastSeenAt, current}]`, this device's marked `current`. */
  listSessions() {
    return get('/api/sessions');
  }

  /** Signs one other device out (its WebSockets are closed by the server). */
  revokeSession(id) {
    return del(`/api/sessions/${encodeURIComponent(id)}`);
  }

  /** Signs every other device out; this one stays. */
  revokeOtherSessions() {
    return del('/api/sessions');
  }

  /** Changes the password; every other session is revoked by the server. */
  async changePassword(currentPassword, newPassword) {
    const res = await post('/api/auth/password', { currentPassword, newPassword });
    if (res && typeof res === 'object' && res.token) this.adoptToken(res.token);
    return res;
  }

  /** Deletes the account (the password confirms it), then signs out here. */
  async deleteAccount(password) {
    await api('DELETE', '/api/users/me', { password });
    this.clearSession();
    disablePush({ local: true }).catch(() => {});
    this.notice = 'Your account was deleted.';
    this.emit('signedout');
  }

  /** The export of the user's data: `{blob, name}` for a download. */
  async exportData() {
    const res = await api('GET', '/api/users/me/export', undefined, { raw: true });
    const blob = await res.blob();
    const cd = res.headers.get('content-disposition') || '';
    const m = cd.match(/filename\*=UTF-8''([^;]+)/i) || cd.match(/filename="?([^";]+)"?/i);
    let name = '';
    try {
      name = m ? decodeURIComponent(m[1]) : '';
    } catch {
      /* a malformed name: the default below */
    }
    if (!name || /[\\/]/.test(name)) name = blob.type.includes('zip') ? 'parley-export.zip' : 'parley-export.json';
    return { blob, name };
  }

  /** The users this one blocked: `[user]`. */
  async blockedUsers() {
    const list = await get('/api/users/blocked');
    return Array.isArray(list) ? list : list?.users || [];
  }

  /** The ids this user blocked, loaded once per sign-in (kept current by block/unblock here). */
  loadBlockedIds() {
    if (!this.blockedLoad) {
      this.blockedLoad = this.blockedUsers().then((list) => {
        this.blockedIds = new Set(list.map((u) => Number(u.id)));
        return this.blockedIds;
      }, (e) => {
        this.blockedLoad = null;
        throw e;
      });
    }
    return this.blockedLoad;
  }

  isBlocked(userId) {
    return !!this.blockedIds?.has(Number(userId));
  }

  async block(userId) {
    await post(`/api/users/${Number(userId)}/block`);
    this.blockedIds?.add(Number(userId));
    this.emit('blocked', { userId: Number(userId), blocked: true });
  }

  async unblock(userId) {
    await del(`/api/users/${Number(userId)}/block`);
    this.blockedIds?.delete(Number(userId));
    this.emit('blocked', { userId: Number(userId), blocked: false });
  }

  clearSession() {
    this.socket.stop();
    try {
      localStorage.removeItem(TOKEN_KEY);
    } catch {
      /* ignore */
    }
    setToken(null);
    e2ee.reset();
    this.changes.clear();
    this.token = null;
    this.me = null;
    this.chats.clear();
    this.users.clear();
    this.stores.clear();
    this.outbox.clear();
    this.typing.clear();
    this.maxSeenId = 0;
    this.activeChatId = null;
    this.everReady = false;
    this.chatsLoaded = false;
    this.chatsNext = null;
    this.chatsMore = null;
    this.blockedIds = null;
    this.blockedLoad = null;
  }

  /** A WebSocket that failed before opening may have been refused with 401. */
  async checkAuth() {
    if (!this.token) return;
    try {
      await get('/api/users/me');
    } catch {
      /* a 401 is handled by the API layer; anything else means "server down" */
    }
  }

  // ---------- chats ----------

  /** The first page of the chat list (newest activity first); older pages come with `loadMoreChats`. */
  async loadChats() {
    const first = !this.chatsLoaded;
    const page = await get(`/api/chats?limit=${CHAT_PAGE}`);
    this.mergeChats(page.chats, { initial: first });
    // Only the first load sets where scrolling continues: a refresh brings the
    // newest chats up to date and leaves the older pages already loaded alone.
    if (first) this.chatsNext = page.nextBefore;
    this.chatsLoaded = true;
  }

  hasMoreChats() {
    return !!this.chatsNext;
  }

  /** Loads the next (older) page of the chat list once; resolves when it is in. */
  loadMoreChats() {
    if (!this.chatsNext) return Promise.resolve(false);
    if (!this.chatsMore) {
      const before = this.chatsNext;
      this.chatsMore = get(`/api/chats?limit=${CHAT_PAGE}&before=${encodeURIComponent(before)}`)
        .then((page) => {
          if (this.chatsNext === before) this.chatsNext = page.nextBefore;
          this.mergeChats(page.chats);
          return true;
        })
        .finally(() => {
          this.chatsMore = null;
        });
    }
    return this.chatsMore;
  }

  // ---------- group administration (the server checks every role) ----------

  /** Takes a chat the server answered with (if it did) into the list. */
  adoptChat(chat) {
    if (chat && typeof chat === 'object' && chat.id && Array.isArray(chat.members)) this.mergeChats([chat]);
  }

  async renameGroup(chatId, title) {
    this.adoptChat(await patch(`/api/chats/${chatId}`, { title }));
  }

  async addMembers(chatId, userIds) {
    this.adoptChat(await post(`/api/chats/${chatId}/members`, { userIds: userIds.map(Number) }));
  }

  async removeMember(chatId, userId) {
    this.adoptChat(await del(`/api/chats/${chatId}/members/${Number(userId)}`));
  }

  async setRole(chatId, userId, role) {
    this.adoptChat(await patch(`/api/chats/${chatId}/members/${Number(userId)}`, { role }));
  }

  /** A member's role in a chat: 'owner' | 'admin' | 'member' (null when not a member). */
  roleIn(chat, userId = this.me?.id) {
    const m = chat?.members?.find((x) => x.id === Number(userId));
    return m ? m.role || 'member' : null;
  }

  /**
   * `chat:updated`: the chat as it is now (title, members, roles). A chat that no
   * longer lists this user is one they were removed from: it stays, read only, with
   * the history up to the removal.
   */
  onChatUpdated({ chat }) {
    if (!chat?.id || !Array.isArray(chat.members)) return;
    const mine = this.me && chat.members.some((m) => m.id === this.me.id);
    if (!mine) return this.markRemoved(chat.id);
    this.mergeChats([chat]);
    this.emit('chat-updated', { chatId: chat.id });
  }

  /** This user was removed from a group (by an admin): keep what they saw, send nothing. */
  markRemoved(chatId) {
    const existing = this.chats.get(chatId);
    if (!existing) return;
    existing.removed = true;
    this.typing.delete(chatId);
    this.emit('chats');
    this.emit('chat-updated', { chatId });
  }

  /** Leaves a group: the server tells the others; this device forgets the chat. */
  async leaveGroup(chatId) {
    await del(`/api/chats/${chatId}/members/me`);
    this.forgetChat(chatId);
  }

  /** Drops a chat this user is no longer in (left here or on another device). */
  forgetChat(chatId) {
    if (!this.chats.has(chatId)) return;
    this.chats.delete(chatId);
    this.stores.delete(chatId);
    this.typing.delete(chatId);
    let dropped = false;
    for (const [clientId, entry] of this.outbox) {
      if (entry.chatId === chatId) {
        this.outbox.delete(clientId);
        dropped = true;
      }
    }
    if (dropped) this.saveOutbox();
    this.emit('chats');
    this.emit('chat-removed', { chatId });
  }

  onMemberLeft({ chatId, userId }) {
    // This user left on another tab (a server without `chat:removed`), or was removed:
    // then `chat:removed` came first and the chat stays, read only. A departure of
    // this user's own is recognised by its system message (see `ingest`).
    if (userId === this.me?.id) {
      if (!this.chats.get(chatId)?.removed) this.forgetChat(chatId);
      return;
    }
    const chat = this.chats.get(chatId);
    if (!chat) return;
    chat.members = (chat.members || []).filter((m) => m.id !== userId);
    this.emit('chats');
  }

  mergeChats(list, { initial = false } = {}) {
    for (const c of list) {
      // an erased account has no name left: it shows as "Deleted account" everywhere
      if (Array.isArray(c.members)) {
        c.members = c.members.map((m) => (isDeletedUser(m) ? { ...m, username: DELETED_NAME, deleted: true } : m));
        // a group that no longer lists this user is one they were removed from (read only)
        if (this.me && c.kind === 'group') c.removed = !c.members.some((m) => m.id === this.me.id);
      }
      for (const m of c.members || []) this.users.set(m.id, { ...this.users.get(m.id), ...m });
      const existing = this.chats.get(c.id);
      if (existing) {
        const keepLast = existing.lastMessage && (!c.lastMessage || existing.lastMessage.id > c.lastMessage.id);
        Object.assign(existing, c, keepLast ? { lastMessage: existing.lastMessage } : {});
        if (this.activeChatId === c.id && document.visibilityState === 'visible') existing.unreadCount = 0;
      } else {
        this.chats.set(c.id, { ...c });
      }
      if (initial && c.lastMessage?.id) this.maxSeenId = Math.max(this.maxSeenId, c.lastMessage.id);
    }
    this.emit('chats');
  }

  refreshChatsSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.loadChats().catch(() => {}), 150);
  }

  sortedChats() {
    const activity = (c) => {
      const times = [c.createdAt, c.lastMessage?.createdAt, c.localLast?.createdAt].filter(Boolean).map((t) => new Date(t).getTime());
      return Math.max(0, ...times);
    };
    return [...this.chats.values()].sort((a, b) => activity(b) - activity(a));
  }

  peerOf(chat) {
    if (!chat || chat.kind !== 'direct') return null;
    const other = chat.members.find((m) => m.id !== this.me?.id) || chat.members[0];
    return other ? this.user(other.id) || other : null;
  }

  chatTitle(chat) {
    if (!chat) return '';
    if (chat.kind === 'group') return chat.title || chat.members.map((m) => (isDeletedUser(m) ? DELETED_NAME : m.username)).join(', ');
    const peer = this.peerOf(chat);
    if (peer && peer.id !== this.me?.id && isDeletedUser(peer)) return DELETED_NAME;
    return peer?.username || chat.title || 'Chat';
  }

  async openDirect(userId) {
    const chat = await post('/api/chats', { userId });
    this.mergeChats([chat]);
    return this.chats.get(chat.id);
  }

  async createGroup(title, memberIds) {
    const chat = await post('/api/chats', { title, memberIds });
    this.mergeChats([chat]);
    return this.chats.get(chat.id);
  }

  async ensureChat(chatId) {
    if (this.chats.has(chatId)) return this.chats.get(chatId);
    const chat = await get(`/api/chats/${chatId}`);
    this.mergeChats([chat]);
    return this.chats.get(chatId);
  }

  /**
   * Mutes (or unmutes) a chat's notifications for this user, on every device:
   * `PATCH /api/chats/:id/settings`. A muted chat sends no Web Push.
   */
  async setMuted(chatId, muted) {
    const res = await patch(`/api/chats/${chatId}/settings`, { muted: !!muted });
    this.onChatSettings({ chatId, ...(res && typeof res === 'object' ? res : {}), muted: typeof res?.muted === 'boolean' ? res.muted : !!muted });
  }

  /** `chat:settings` (another device of this user changed them) or our own PATCH's answer. */
  onChatSettings({ chatId, muted, mutedUntil = null } = {}) {
    const chat = this.chats.get(Number(chatId));
    if (!chat || typeof muted !== 'boolean') return;
    chat.muted = muted;
    chat.mutedUntil = muted ? mutedUntil : null;
    this.emit('chats');
    this.emit('chat-updated', { chatId: chat.id });
  }

  unreadTotal() {
    let n = 0;
    for (const c of this.chats.values()) n += c.unreadCount || 0;
    return n;
  }

  // ---------- messages ----------

  store(chatId) {
    let s = this.stores.get(chatId);
    if (!s) {
      s = new ChatStore(chatId);
      this.stores.set(chatId, s);
      for (const [clientId, entry] of this.outbox) {
        if (entry.chatId === chatId) s.upsert(this.pendingFromFrame(entry));
      }
    }
    return s;
  }

  pendingFromFrame(entry) {
    const f = entry.frame;
    return {
      id: null, chatId: f.chatId, senderId: this.me.id, clientId: f.clientId, kind: f.kind,
      content: f.content || '', encrypted: !!f.encrypted, e2ee: f.e2ee || null, audio: entry.audio || null,
      media: entry.media || null,
      replyTo: f.replyToId ? this.quoteOf(f.chatId, f.replyToId) : null, editedAt: null, deleted: false, reactions: [],
      createdAt: entry.createdAt, status: 'pending', localSeq: ++this.localSeq,
    };
  }

  /** The `replyTo` of a message we are about to send, from our own copy of the original. */
  quoteOf(chatId, messageId) {
    const o = this.stores.get(chatId)?.byId(messageId);
    if (!o) return { id: messageId, senderId: null, kind: 'text', preview: '…', deleted: false }; // until the ack brings it
    return {
      id: o.id, senderId: o.senderId, kind: o.kind, deleted: !!o.deleted,
      preview: o.deleted || o.encrypted || o.kind !== 'text' ? null : String(o.content || '').slice(0, 120),
    };
  }

  /** Loads the newest page, or the page before the oldest loaded message. */
  loadOlder(chatId) {
    const s = this.store(chatId);
    if (s.loading) return s.loading;
    if (s.nextBefore === null) return Promise.resolve(0);
    const q = new URLSearchParams({ chatId: String(chatId), limit: String(PAGE) });
    if (s.nextBefore) q.set('before', String(s.nextBefore));
    s.loading = get(`/api/messages?${q}`)
      .then((page) => {
        for (const m of page.messages) {
          this.maxSeenId = Math.max(this.maxSeenId, m.id);
          s.upsert(m);
        }
        s.nextBefore = page.nextBefore ?? null;
        if (page.messages.length < 1) s.nextBefore = null;
        this.emit('history', { chatId, count: page.messages.length });
        return page.messages.length;
      })
      .finally(() => {
        s.loading = null;
      });
    return s.loading;
  }

  /** Every message from the server goes through here (history aside). */
  ingest(msg, source) {
    if (!msg || !msg.id) return;
    if (msg.kind === 'system' && this.me) {
      // "X left" naming this user: they left (here or on another tab); the chat goes
      const c = systemContent(msg);
      if (c?.action === 'left' && c.userIds.includes(this.me.id)) {
        this.maxSeenId = Math.max(this.maxSeenId, msg.id);
        this.forgetChat(msg.chatId);
        return;
      }
    }
    this.maxSeenId = Math.max(this.maxSeenId, msg.id);
    const chat = this.chats.get(msg.chatId);
    const mine = msg.senderId === this.me?.id;
    if (!mine && source !== 'ack') this.queueDelivered(msg.id);
    let isNew = true;
    const s = this.stores.get(msg.chatId);
    if (s) {
      const r = s.upsert(msg);
      isNew = r.isNew;
      if (mine && source !== 'ack' && msg.status !== 'pending') {
        // our message from another device, or the ack of one we sent
      }
      this.emit('message', { chatId: msg.chatId, msg: r.msg, isNew });
    }
    if (!chat) {
      this.refreshChatsSoon();
      return;
    }
    const prevLast = chat.lastMessage?.id || 0;
    if (msg.id >= prevLast) {
      chat.lastMessage = s?.byId(msg.id) || msg;
      if (chat.localLast && chat.localLast.clientId === msg.clientId) chat.localLast = null;
    }
    if (msg.id > prevLast && !mine) {
      if (this.activeChatId === msg.chatId && document.visibilityState === 'visible') this.markReadSoon(msg.chatId);
      else chat.unreadCount = (chat.unreadCount || 0) + 1;
      if (source === 'live' && this.activeChatId !== msg.chatId) {
        announce(`New message from ${this.user(msg.senderId)?.username || 'someone'} in ${this.chatTitle(chat)}`);
      }
    }
    this.emit('chats');
  }

  queueDelivered(id) {
    this.deliverQueue.add(id);
    if (!this.deliverTimer) this.deliverTimer = setTimeout(() => this.flushDelivered(), 120);
  }

  flushDelivered() {
    this.deliverTimer = null;
    if (!this.deliverQueue.size) return;
    const ids = [...this.deliverQueue];
    if (this.socket.send('message:delivered', { messageIds: ids })) this.deliverQueue.clear();
  }

  markReadSoon(chatId) {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.markRead(chatId), 80);
  }

  /** Tells the server we read everything shown in the open, visible chat. */
  markRead(chatId) {
    if (this.activeChatId !== chatId || document.visibilityState !== 'visible') return;
    const s = this.stores.get(chatId);
    const chat = this.chats.get(chatId);
    if (!s || !this.me) return;
    const upTo = s.maxIdFrom((m) => m.senderId !== this.me.id);
    if (chat && chat.unreadCount) {
      chat.unreadCount = 0;
      this.emit('chats');
    }
    if (upTo > s.readSent && this.socket.isReady) {
      if (this.socket.send('message:read', { chatId, messageId: upTo })) s.readSent = upTo;
    }
  }

  setActiveChat(chatId) {
    this.activeChatId = chatId;
    if (chatId) this.markReadSoon(chatId);
  }

  // ---------- sending ----------

  isEncrypted(chatId) {
    try {
      return !!JSON.parse(localStorage.getItem(`parley:e2ee-chats:${this.me?.id}`) || '{}')[chatId];
    } catch {
      return false;
    }
  }

  setEncrypted(chatId, on) {
    const key = `parley:e2ee-chats:${this.me?.id}`;
    let all = {};
    try {
      all = JSON.parse(localStorage.getItem(key) || '{}') || {};
    } catch {
      /* ignore */
    }
    if (on) all[chatId] = true;
    else delete all[chatId];
    localStorage.setItem(key, JSON.stringify(all));
    this.emit('encryption', { chatId, on });
  }

  /** Sends a text (optionally a reply). Resolves false (and says why) when it could not be queued. */
  async sendText(chatId, text, { replyToId = null } = {}) {
    const chat = this.chats.get(chatId);
    if (!chat || !this.me) return false;
    const clientId = crypto.randomUUID();
    const frame = { chatId, clientId, kind: 'text', content: text };
    if (replyToId) frame.replyToId = Number(replyToId);
    if (this.isEncrypted(chatId)) {
      const memberIds = chat.members.map((m) => m.id);
      try {
        const env = await e2ee.encrypt(text, { chatId, senderId: this.me.id, clientId, memberIds });
        Object.assign(frame, { content: '', encrypted: true, e2ee: env });
        e2ee.seed({ chatId, senderId: this.me.id, clientId, e2ee: env }, text);
      } catch (e) {
        if (e instanceof e2ee.MissingKeyError) {
          const names = e.users.map((id) => this.user(id)?.username || `user ${id}`).join(', ');
          this.emit('send-error', { chatId, text: `Not sent: ${names} ${e.users.length > 1 ? 'have' : 'has'} no encryption key yet, so this message cannot be encrypted for them. Turn encryption off or ask them to open Parley first.` });
        } else {
          this.emit('send-error', { chatId, text: `Not sent: encryption failed (${e.message || e}).` });
        }
        return false;
      }
    }
    this.enqueue(frame);
    return true;
  }

  /**
   * Sends an uploaded attachment (`media`, the upload answer) with an optional caption.
   * In an encrypted chat `secret` is the attachment's key, type and name (see
   * media.js `encryptFile`): they and the caption travel only inside the envelope,
   * and `kind` says whether it is a photo. Resolves false (and says why) when it could
   * not be queued; the upload is then left unsent (the server sweeps it).
   */
  async sendMedia(chatId, media, { caption = '', secret = null, kind = null, replyToId = null } = {}) {
    const chat = this.chats.get(chatId);
    if (!chat || !this.me) return false;
    const clientId = crypto.randomUUID();
    const frame = { chatId, clientId, kind: kind || media.kind, mediaId: media.mediaId };
    if (replyToId) frame.replyToId = Number(replyToId);
    const extra = { media };
    if (secret) {
      const plain = JSON.stringify({ text: caption, media: secret });
      const memberIds = chat.members.map((m) => m.id);
      try {
        const env = await e2ee.encrypt(plain, { chatId, senderId: this.me.id, clientId, memberIds });
        Object.assign(frame, { content: '', encrypted: true, e2ee: env });
        e2ee.seed({ chatId, senderId: this.me.id, clientId, e2ee: env }, plain);
      } catch (e) {
        const why = e instanceof e2ee.MissingKeyError
          ? `${e.users.map((id) => this.user(id)?.username || `user ${id}`).join(', ')} ${e.users.length > 1 ? 'have' : 'has'} no encryption key yet`
          : `encryption failed (${e.message || e})`;
        this.emit('send-error', { chatId, text: `Not sent: ${why}.` });
        return false;
      }
    } else if (caption) frame.content = caption;
    if (frame.kind === 'audio') {
      extra.audio = { audioId: media.mediaId, url: media.url, mime: media.mime, bytes: media.bytes, durationMs: media.durationMs ?? null };
    }
    this.enqueue(frame, extra);
    return true;
  }

  enqueue(frame, extra = {}) {
    const entry = { frame, chatId: frame.chatId, createdAt: new Date().toISOString(), ...extra };
    this.outbox.set(frame.clientId, entry);
    this.saveOutbox();
    this.showPending(entry);
    this.trySend(frame.clientId);
  }

  showPending(entry) {
    const msg = this.pendingFromFrame(entry);
    const chat = this.chats.get(entry.chatId);
    if (chat) {
      chat.localLast = msg;
      this.emit('chats');
    }
    const s = this.stores.get(entry.chatId);
    if (s) {
      const r = s.upsert(msg);
      this.emit('message', { chatId: entry.chatId, msg: r.msg, isNew: r.isNew, own: true });
    }
  }

  trySend(clientId) {
    const entry = this.outbox.get(clientId);
    if (!entry || entry.inFlight || !this.socket.isReady) return;
    entry.inFlight = true;
    this.socket
      .request('message:send', entry.frame)
      .then((msg) => {
        this.outbox.delete(clientId);
        this.saveOutbox();
        if (msg?.audio?.audioId && entry.durationMs) rememberDuration(msg.audio.audioId, entry.durationMs);
        this.ingest(msg, 'ack');
      })
      .catch((err) => {
        entry.inFlight = false;
        if (RETRYABLE.has(err.code)) {
          if (err.code !== 'disconnected' && err.code !== 'stopped') setTimeout(() => this.trySend(clientId), 2000);
          return;
        }
        this.outbox.delete(clientId);
        this.saveOutbox();
        this.markFailed(entry, err.message || err.code);
      });
  }

  markFailed(entry, reason) {
    const s = this.stores.get(entry.chatId);
    const key = `${this.me.id}|${entry.frame.clientId}`;
    const m = s?.get(key);
    if (m) {
      m.status = 'failed';
      m.error = reason;
      m.retry = entry;
      this.emit('message', { chatId: entry.chatId, msg: m, isNew: false });
    }
    this.emit('send-error', { chatId: entry.chatId, text: `Message not sent: ${reason}` });
  }

  retry(msg) {
    const entry = msg.retry;
    if (!entry) return;
    msg.retry = null;
    msg.status = 'pending';
    msg.error = null;
    if (entry.upload) return this.uploadAndSend(entry.chatId, entry.upload.blob, entry.upload.durationMs, entry.frame.clientId);
    this.outbox.set(entry.frame.clientId, { ...entry, inFlight: false });
    this.saveOutbox();
    this.emit('message', { chatId: entry.chatId, msg, isNew: false });
    this.trySend(entry.frame.clientId);
  }

  /** Voice message: upload the recording, then send it like any message. */
  async uploadAndSend(chatId, blob, durationMs, clientId = crypto.randomUUID()) {
    const localUrl = URL.createObjectURL(blob);
    const s = this.stores.get(chatId);
    const local = {
      id: null, chatId, senderId: this.me.id, clientId, kind: 'audio', content: '', encrypted: false, e2ee: null,
      audio: { audioId: null, url: null, mime: blob.type, bytes: blob.size, durationMs }, localAudio: localUrl,
      createdAt: new Date().toISOString(), status: 'pending', localSeq: ++this.localSeq,
    };
    if (s) {
      const r = s.upsert(local);
      this.emit('message', { chatId, msg: r.msg, isNew: r.isNew, own: true });
    }
    const ext = blob.type.includes('ogg') ? 'ogg' : blob.type.includes('mp4') ? 'm4a' : blob.type.includes('mpeg') ? 'mp3' : 'webm';
    const form = new FormData();
    form.append('chatId', String(chatId));
    if (durationMs > 0) form.append('durationMs', String(Math.round(durationMs)));
    form.append('file', new File([blob], `voice-message.${ext}`, { type: blob.type || 'audio/webm' }));
    let up;
    try {
      up = await post('/api/messages/upload-audio', form);
    } catch (e) {
      const m = s?.get(`${this.me.id}|${clientId}`);
      const reason = e.status === 404 ? 'voice messages are not available on this server' : e.message;
      if (m) {
        m.status = 'failed';
        m.error = reason;
        m.retry = { chatId, frame: { clientId }, upload: { blob, durationMs } };
        this.emit('message', { chatId, msg: m, isNew: false });
      }
      this.emit('send-error', { chatId, text: `Voice message not sent: ${reason}` });
      return false;
    }
    rememberDuration(up.audioId, durationMs);
    const frame = { chatId, clientId, kind: 'audio', audioId: up.audioId };
    const entry = { frame, chatId, createdAt: local.createdAt, durationMs, audio: { ...local.audio, audioId: up.audioId, url: up.url } };
    this.outbox.set(clientId, entry);
    this.saveOutbox();
    const m = s?.get(`${this.me.id}|${clientId}`);
    if (m) m.audio = { ...m.audio, audioId: up.audioId, url: up.url };
    this.trySend(clientId);
    return true;
  }

  outboxKey() {
    return `parley:outbox:${this.me?.id}`;
  }

  saveOutbox() {
    if (!this.me) return;
    const list = [...this.outbox.values()].map(({ frame, chatId, createdAt, audio, durationMs, media }) => ({ frame, chatId, createdAt, audio, durationMs, media }));
    try {
      if (list.length) localStorage.setItem(this.outboxKey(), JSON.stringify(list));
      else localStorage.removeItem(this.outboxKey());
    } catch {
      /* quota: keep it in memory */
    }
  }

  loadOutbox() {
    this.outbox.clear();
    try {
      for (const e of JSON.parse(localStorage.getItem(this.outboxKey()) || '[]')) {
        if (e?.frame?.clientId) this.outbox.set(e.frame.clientId, { ...e, inFlight: false });
      }
    } catch {
      /* ignore */
    }
  }

  flushOutbox() {
    for (const clientId of this.outbox.keys()) this.trySend(clientId);
  }

  // ---------- edits, deletes, reactions ----------

  /** Applies a change to our copy of a message (open chat and chat list) and tells the views. */
  applyToMessage(chatId, messageId, fn, { quotes = true } = {}) {
    const s = this.stores.get(chatId);
    const m = s?.byId(messageId);
    if (m && fn(m)) {
      this.emit('message', { chatId, msg: m, isNew: false, changed: true });
      if (quotes) for (const q of refreshQuotes(s.byKey.values(), m)) this.emit('message', { chatId, msg: q, isNew: false, requote: true });
    }
    const chat = this.chats.get(chatId);
    const last = chat?.lastMessage;
    if (last && Number(last.id) === Number(messageId) && last !== m) fn(last);
    if (chat) this.emit('chats');
  }

  onEdited({ message, changeId }) {
    if (!message?.id) return;
    this.changes.advance(changeId);
    this.applyToMessage(message.chatId, message.id, (m) => applyEdit(m, message, changeId));
  }

  onDeleted({ chatId, messageId, changeId }) {
    if (!messageId) return;
    this.changes.advance(changeId);
    this.applyToMessage(chatId, messageId, (m) => applyDelete(m, changeId));
  }

  onReaction(ev) {
    if (!ev?.messageId) return;
    this.changes.advance(ev.changeId);
    this.applyToMessage(ev.chatId, ev.messageId, (m) => applyReaction(m, ev), { quotes: false });
  }

  /** A request for a change; rejects with an Error whose message can be shown as is. */
  async action(event, data) {
    try {
      return await this.socket.request(event, data);
    } catch (e) {
      const err = new Error(ACTION_ERRORS[e.code] || e.message || String(e));
      err.code = e.code;
      throw err;
    }
  }

  canEdit(m) {
    return !!m && !!m.id && m.senderId === this.me?.id && m.kind === 'text' && !m.deleted
      && Date.now() - new Date(m.createdAt).getTime() < EDIT_WINDOW_MS;
  }

  /** Replaces the text of our own message; an encrypted one is encrypted again (same aad). */
  async editMessage(msg, text) {
    const chat = this.chats.get(msg.chatId);
    const data = { messageId: msg.id };
    let env = null;
    if (msg.encrypted) {
      const memberIds = (chat?.members || []).map((m) => m.id);
      try {
        env = await e2ee.encrypt(text, { chatId: msg.chatId, senderId: msg.senderId, clientId: msg.clientId, memberIds });
      } catch (e) {
        if (e instanceof e2ee.MissingKeyError) {
          const names = e.users.map((id) => this.user(id)?.username || `user ${id}`).join(', ');
          throw new Error(`Not edited: ${names} ${e.users.length > 1 ? 'have' : 'has'} no encryption key.`);
        }
        throw new Error(`Not edited: encryption failed (${e.message || e}).`);
      }
      e2ee.seed({ ...msg, e2ee: env }, text);
      data.e2ee = env;
    } else data.content = text;
    const ack = await this.action('message:edit', data);
    const message = ack?.message?.id ? ack.message
      : { ...msg, content: env ? '' : text, e2ee: env, editedAt: new Date().toISOString() };
    this.applyToMessage(msg.chatId, msg.id, (m) => applyEdit(m, message, ack?.changeId ?? null));
  }

  async deleteMessage(msg) {
    const ack = await this.action('message:delete', { messageId: msg.id });
    this.applyToMessage(msg.chatId, msg.id, (m) => applyDelete(m, ack?.changeId ?? null));
  }

  /** Adds (`active`) or removes our reaction. */
  async react(msg, emoji, active) {
    const ack = await this.action('message:react', { messageId: msg.id, emoji, active });
    const ev = { userId: this.me.id, emoji, active, changeId: ack?.changeId ?? null };
    this.applyToMessage(msg.chatId, msg.id, (m) => applyReaction(m, ev, { own: true }), { quotes: false });
  }

  // ---------- typing ----------

  sendTyping(chatId, active) {
    this.socket.send('typing', { chatId, active });
  }

  typingIn(chatId) {
    const m = this.typing.get(chatId);
    return m ? [...m.keys()].map((id) => this.user(id)?.username || 'Someone') : [];
  }

  // ---------- socket events ----------

  wireSocket() {
    const s = this.socket;
    s.addEventListener('state', (e) => this.emit('connection', e.detail));
    s.addEventListener('ready', (e) => this.onReady(e.detail));
    s.addEventListener('message:edited', (e) => this.onEdited(e.detail));
    s.addEventListener('message:deleted', (e) => this.onDeleted(e.detail));
    s.addEventListener('message:reaction', (e) => this.onReaction(e.detail));
    s.addEventListener('message:received', (e) => this.ingest(e.detail, this.syncing ? 'sync' : 'live'));
    s.addEventListener('message:delivered', (e) => this.onDelivered(e.detail));
    s.addEventListener('message:read', (e) => this.onRead(e.detail));
    s.addEventListener('typing', (e) => this.onTyping(e.detail));
    s.addEventListener('chat:member-left', (e) => this.onMemberLeft(e.detail));
    s.addEventListener('chat:updated', (e) => this.onChatUpdated(e.detail));
    s.addEventListener('chat:settings', (e) => this.onChatSettings(e.detail));
    s.addEventListener('chat:removed', (e) => this.markRemoved(Number(e.detail.chatId)));
    s.addEventListener('user:online', (e) => this.onPresence(e.detail.userId, { online: true }));
    s.addEventListener('user:offline', (e) => this.onPresence(e.detail.userId, { online: false, lastSeenAt: e.detail.lastSeenAt }));
    s.addEventListener('user:key-changed', (e) => {
      e2ee.keyChanged(e.detail.userId, e.detail.fingerprint);
      const u = this.user(e.detail.userId);
      if (u) u.hasPublicKey = true;
      this.emit('keys', { userId: e.detail.userId });
    });
    s.addEventListener('error', (e) => console.warn('server error frame', e.detail));
  }

  async onReady(ready = {}) {
    const reconnect = this.everReady;
    this.everReady = true;
    const after = this.maxSeenId;
    // Changes: a tab that has applied changes before asks for what it missed since;
    // a fresh one starts from now (what it loads over HTTP is already current).
    const lastChange = Number(ready.lastChange) || 0;
    let changeFrom = null;
    if (this.changes.value === null) this.changes.advance(lastChange);
    else if (this.changes.value < lastChange) changeFrom = this.changes.value;
    if (reconnect) {
      try {
        const page = await get(`/api/chats?limit=${CHAT_PAGE}`);
        // presence and new chats; `lastMessage` updates come from sync below
        this.mergeChats(page.chats);
      } catch {
        /* sync still runs */
      }
    }
    this.syncing = true;
    try {
      let from = after;
      for (let i = 0; i < 1000; i++) {
        const req = { afterId: from };
        if (changeFrom !== null) req.afterChange = changeFrom;
        const ack = await this.socket.request('sync', req, 60000);
        let moved = false;
        if (changeFrom !== null && ack?.lastChange != null) {
          this.changes.advance(ack.lastChange);
          moved = Number(ack.lastChange) > changeFrom;
          if (moved) changeFrom = Number(ack.lastChange);
        }
        if (ack?.lastId && ack.lastId > from) {
          from = ack.lastId;
          moved = true;
        }
        if (!ack?.hasMore || !moved) break;
      }
    } catch (e) {
      console.warn('sync failed', e);
    } finally {
      this.syncing = false;
    }
    this.flushDelivered();
    this.flushOutbox();
    if (this.activeChatId) this.markRead(this.activeChatId);
    this.emit('synced');
  }

  ownMessages(chatId, fn) {
    const s = this.stores.get(chatId);
    const changed = [];
    if (s) {
      for (const m of s.byKey.values()) {
        if (m.senderId === this.me.id && m.id && fn(m)) changed.push(m);
      }
    }
    return changed;
  }

  bump(m, status) {
    if ((STATUS_RANK[status] ?? 0) > (STATUS_RANK[m.status] ?? 0)) {
      m.status = status;
      return true;
    }
    return false;
  }

  onDelivered({ chatId, messageIds = [], userId }) {
    const chat = this.chats.get(chatId);
    const ids = new Set(messageIds.map(Number));
    const others = chat ? chat.members.filter((m) => m.id !== this.me.id).length : 1;
    const s = this.stores.get(chatId);
    const apply = (m) => {
      if (!ids.has(m.id)) return false;
      if (chat?.kind === 'group' && s) {
        let set = s.deliveredTo.get(m.id);
        if (!set) s.deliveredTo.set(m.id, (set = new Set()));
        set.add(userId);
        if (set.size < others) return false;
      }
      return this.bump(m, 'delivered');
    };
    for (const m of this.ownMessages(chatId, apply)) this.emit('message', { chatId, msg: m, isNew: false });
    if (chat?.lastMessage && chat.lastMessage.senderId === this.me.id && ids.has(chat.lastMessage.id) && chat.kind !== 'group') {
      this.bump(chat.lastMessage, 'delivered');
    }
    this.emit('chats');
  }

  onRead({ chatId, messageId, userId }) {
    const chat = this.chats.get(chatId);
    const s = this.stores.get(chatId);
    let upTo = Number(messageId);
    if (chat?.kind === 'group' && s) {
      s.readUpTo.set(userId, Math.max(s.readUpTo.get(userId) || 0, upTo));
      const others = chat.members.filter((m) => m.id !== this.me.id);
      upTo = Math.min(...others.map((m) => s.readUpTo.get(m.id) || 0));
    }
    for (const m of this.ownMessages(chatId, (m) => m.id <= upTo && this.bump(m, 'read'))) {
      this.emit('message', { chatId, msg: m, isNew: false });
    }
    if (chat?.lastMessage && chat.lastMessage.senderId === this.me.id && chat.lastMessage.id <= upTo) this.bump(chat.lastMessage, 'read');
    this.emit('chats');
  }

  onTyping({ chatId, userId, active }) {
    if (userId === this.me?.id) return;
    let m = this.typing.get(chatId);
    if (!m) this.typing.set(chatId, (m = new Map()));
    clearTimeout(m.get(userId));
    if (active) {
      m.set(userId, setTimeout(() => {
        m.delete(userId);
        this.emit('typing', { chatId });
      }, 5000));
    } else m.delete(userId);
    this.emit('typing', { chatId });
  }

  onPresence(userId, patch) {
    const u = this.users.get(userId) || { id: userId };
    Object.assign(u, patch);
    this.users.set(userId, u);
    for (const c of this.chats.values()) {
      for (const m of c.members) if (m.id === userId) Object.assign(m, patch);
    }
    this.emit('presence', { userId });
    this.emit('chats');
  }

  // ---------- people ----------

  searchUsers(query, signal) {
    return get(`/api/users/search?query=${encodeURIComponent(query)}`, { signal });
  }
}

export { api };
