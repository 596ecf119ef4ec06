// The lines a group's changes leave in its timeline ("Ann added Bob", "Ann renamed
// the group to “Trip”"): messages of kind `system` whose content is the JSON
// `{action, actorId, userIds, title?, role?}` (PROTOCOL.md, "Groups and blocking"),
// `action` one of renamed, added, removed, left, role_changed. Names
// come from the chat's members and the people this client knows; an erased account
// is "Deleted account", someone this client never saw is "someone".

export const DELETED_NAME = 'Deleted account';

/** Whether a user object is an erased account (no username left). */
export function isDeletedUser(u) {
  return !!u && (u.deleted === true || !!u.deletedAt || u.username === null || u.username === '');
}

/** The name to show for a user id: theirs, "Deleted account", or null when unknown. */
export function displayName(app, userId, chat = null) {
  const id = Number(userId);
  const u = chat?.members?.find((m) => m.id === id) || app.user(id);
  if (!u) return null;
  if (isDeletedUser(u)) return DELETED_NAME;
  return u.username;
}

/** Parses a system message's content; `null` when it is not the expected JSON. */
export function systemContent(msg) {
  let c = msg?.content;
  if (typeof c === 'string') {
    try {
      c = JSON.parse(c);
    } catch {
      return null;
    }
  }
  if (!c || typeof c !== 'object' || typeof c.action !== 'string') return null;
  return {
    action: c.action,
    actorId: c.actorId == null ? null : Number(c.actorId),
    userIds: Array.isArray(c.userIds) ? c.userIds.map(Number) : [],
    title: typeof c.title === 'string' ? c.title : null,
    role: typeof c.role === 'string' ? c.role : null,
  };
}

function joinNames(names) {
  if (names.length <= 1) return names[0] || 'someone';
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** The sentence for a system message. */
export function systemText(app, msg, chat = app.chats.get(msg?.chatId)) {
  const c = systemContent(msg);
  if (!c) return 'The group changed';
  const meId = app.me?.id;
  const name = (id, { start = false } = {}) => {
    if (id === meId) return start ? 'You' : 'you';
    return displayName(app, id, chat) || (start ? 'Someone' : 'someone');
  };
  const actor = c.actorId != null ? name(c.actorId, { start: true }) : 'Someone';
  const targets = joinNames(c.userIds.map((id) => name(id)));
  const Targets = c.userIds.length ? joinNames(c.userIds.map((id, i) => name(id, { start: i === 0 }))) : actor;
  const many = c.userIds.length > 1;
  switch (c.action) {
    case 'added':
      return `${actor} added ${targets}`;
    case 'removed':
      return `${actor} removed ${targets}`;
    case 'left':
      return `${Targets} left`;
    case 'renamed':
      return c.title ? `${actor} renamed the group to “${c.title}”` : `${actor} renamed the group`;
    case 'role_changed':
      if (c.role === 'admin') return `${actor} made ${targets} ${many ? 'admins' : 'an admin'}`;
      // the owner hands over the group (or left, and the oldest admin or member took it)
      if (c.role === 'owner') return `${Targets} ${c.userIds[0] === meId ? 'are' : 'is'} now the owner`;
      return `${actor} made ${targets} ${many ? 'members' : 'a member'}`;
    default:
      return 'The group changed';
  }
}
