// Edits, deletes and reactions applied to the client's copy of a message, by the
// rules of PROTOCOL.md "Changes and convergence": an edit replaces the content, a
// delete empties the message for good, a reaction sets that emoji's count and adds
// or removes the user. Live events of two changes may arrive in either order, so each
// message remembers the highest changeId applied to its content and to each emoji,
// and an edit or reaction that is not newer is ignored (a delete always applies).
// The change cursor (highest changeId seen) lives in sessionStorage per user, so a
// reloaded tab asks `sync` only for what it missed.

/** Empties a message deleted for everyone; what is left is what the server keeps. */
export function markDeleted(m) {
  m.deleted = true;
  m.content = '';
  m.e2ee = null;
  m.encrypted = false;
  m.audio = null;
  m.localAudio = null;
  m.media = null;
  m.reactions = [];
  m.replyTo = null;
  m.editedAt = null;
  return m;
}

/** A message as first stored by the client: a deleted one arrives without most fields. */
export function withDefaults(incoming) {
  const m = { ...incoming };
  if (!m.clientId) m.clientId = `#${m.id}`; // deleted messages carry no client id
  if (m.deleted) markDeleted(m);
  if (!Array.isArray(m.reactions)) m.reactions = [];
  return m;
}

/**
 * Merges a newer server copy into an existing message. An older copy (a history page
 * read before an edit we applied live) never takes back newer content, and nothing
 * brings a deleted message back.
 */
export function mergeCopy(existing, incoming) {
  if (existing.deleted) return existing;
  if (incoming.deleted) return markDeleted(existing);
  const keep = existing.editedAt && (!incoming.editedAt || incoming.editedAt < existing.editedAt)
    ? { content: existing.content, e2ee: existing.e2ee, encrypted: existing.encrypted, editedAt: existing.editedAt }
    : null;
  Object.assign(existing, incoming, keep || {});
  if (!Array.isArray(existing.reactions)) existing.reactions = [];
  return existing;
}

/** `message:edited`: returns true when it changed the copy. */
export function applyEdit(m, message, changeId) {
  if (message.deleted) return applyDelete(m, changeId);
  if (m.deleted) return false;
  if (changeId != null && (m.contentChange ?? 0) >= changeId) return false;
  if (changeId != null) m.contentChange = changeId;
  m.content = message.content ?? '';
  m.e2ee = message.e2ee ?? null;
  m.encrypted = !!message.encrypted;
  m.editedAt = message.editedAt ?? m.editedAt ?? null;
  if ('replyTo' in message) m.replyTo = message.replyTo;
  return true;
}

/** `message:deleted`: always applies. Returns true when the copy was not deleted yet. */
export function applyDelete(m, changeId) {
  if (changeId != null) m.contentChange = Math.max(m.contentChange ?? 0, changeId);
  if (m.deleted) return false;
  markDeleted(m);
  return true;
}

/**
 * `message:reaction` {userId, emoji, active, count, changeId}. `own` is the ack of our
 * own reaction (no count in it): when it is not newer than what we applied, or the
 * server changed nothing (changeId null), only our membership is set right.
 */
export function applyReaction(m, { userId, emoji, active, count, changeId }, { own = false } = {}) {
  if (m.deleted) return false;
  m.reactionChange ||= {};
  const stale = changeId == null || (m.reactionChange[emoji] ?? 0) >= changeId;
  if (stale && !own) return false;
  if (!stale) m.reactionChange[emoji] = changeId;
  if (!Array.isArray(m.reactions)) m.reactions = [];
  let r = m.reactions.find((x) => x.emoji === emoji);
  if (!r) {
    if (!active) return false;
    r = { emoji, count: 0, userIds: [] };
    m.reactions.push(r);
  }
  const has = r.userIds.includes(userId);
  if (active && !has) r.userIds = [...r.userIds, userId];
  if (!active && has) r.userIds = r.userIds.filter((u) => u !== userId);
  if (!stale) {
    const delta = active && !has ? 1 : !active && has ? -1 : 0;
    r.count = Number.isFinite(count) ? count : Math.max(r.userIds.length, (r.count || 0) + delta);
  } else if (r.count < r.userIds.length) r.count = r.userIds.length;
  if (r.count <= 0) m.reactions = m.reactions.filter((x) => x !== r);
  return true;
}

/** The changed quote of every message that answers `original` (deleted or edited). */
export function refreshQuotes(messages, original) {
  const changed = [];
  for (const m of messages) {
    if (!m.replyTo || Number(m.replyTo.id) !== Number(original.id)) continue;
    if (original.deleted) {
      if (m.replyTo.deleted) continue;
      m.replyTo = { ...m.replyTo, preview: null, deleted: true };
    } else if (!original.encrypted && original.kind === 'text') {
      const preview = String(original.content || '').slice(0, 120);
      if (m.replyTo.preview === preview) continue;
      m.replyTo = { ...m.replyTo, preview };
    }
    // an encrypted original: the quote shows our own decrypted copy, to be read again
    changed.push(m);
  }
  return changed;
}

/** The highest changeId this tab has applied, per user (sessionStorage). */
export class ChangeCursor {
  constructor() {
    this.userId = null;
    this.value = null; // null: never connected in this tab
  }

  key() {
    return `parley:change-cursor:${this.userId}`;
  }

  load(userId) {
    this.userId = userId;
    this.value = null;
    try {
      const saved = sessionStorage.getItem(this.key());
      const v = Number(saved);
      if (saved !== null && Number.isFinite(v) && v >= 0) this.value = v;
    } catch {
      /* storage off: start from ready.lastChange */
    }
  }

  advance(changeId) {
    const v = Number(changeId);
    if (changeId == null || !Number.isFinite(v) || v < 0 || (this.value !== null && v <= this.value)) return;
    this.value = v;
    try {
      sessionStorage.setItem(this.key(), String(v));
    } catch {
      /* keep it in memory */
    }
  }

  clear() {
    try {
      if (this.userId !== null) sessionStorage.removeItem(this.key());
    } catch {
      /* ignore */
    }
    this.userId = null;
    this.value = null;
  }
}
