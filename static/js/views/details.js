// A chat's details (the header's info button): the members with their key
// fingerprints, and what the viewer may do there. In a group: rename it and add or
// remove people (admins), make someone an admin or a member again (the owner), leave.
// In a direct chat: block or unblock the other person. In both: "Mute
// notifications" (no Web Push for this chat, on every device of the viewer). The server checks every
// right; the controls shown follow the roles in `chat.members[].role`, and the
// dialog follows `chat:updated` while it is open.

import { h, clear, icons, avatar, toast, announce, fingerprintGroups, lastSeen } from '../ui.js';
import * as e2ee from '../e2ee.js';
import { modal } from './modal.js';
import { confirmDialog } from './dialogs.js';
import { displayName, DELETED_NAME } from './system.js';

const ROLE_LABEL = { owner: 'Owner', admin: 'Admin', member: 'Member' };
const ROLE_ORDER = { owner: 0, admin: 1, member: 2 };

export function chatInfoDialog(app, chat) {
  const isGroup = chat.kind === 'group';
  const body = h('div', { class: 'modal-body stack' });
  const offs = [];
  const { close, heading } = modal(isGroup ? app.chatTitle(chat) : 'Contact info', body, {
    wide: true,
    onClose: () => offs.forEach((f) => f()),
  });
  const myRole = () => app.roleIn(chat);
  const isAdmin = () => ['owner', 'admin'].includes(myRole());
  const nameOf = (u) => displayName(app, u.id, chat) || 'Someone';

  // ---------- parts that persist across renders (so typing is not lost) ----------
  const renameError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const renameInput = h('input', { id: 'group-rename', type: 'text', required: true, maxlength: 100, autocomplete: 'off', value: chat.title || '' });
  const renameBtn = h('button', { type: 'submit', class: 'btn' }, 'Rename');
  const renameForm = h('form', { class: 'inline-form', novalidate: true },
    h('div', { class: 'field grow' }, h('label', { for: 'group-rename' }, 'Group name'), renameInput), renameBtn);

  const add = addPeople(app, chat);
  const leaveBtn = h('button', { type: 'button', class: 'btn danger' }, h('span', { class: 'icon', html: icons.logout }), ' Leave group');
  const blockBtn = h('button', { type: 'button', class: 'btn danger block-btn' });
  const blockNote = h('p', { class: 'muted small', role: 'status' });

  renameForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    renameError.hidden = true;
    const title = renameInput.value.trim();
    if (!title) {
      renameError.textContent = 'Give the group a name.';
      renameError.hidden = false;
      renameInput.setAttribute('aria-invalid', 'true');
      renameInput.focus();
      return;
    }
    renameInput.removeAttribute('aria-invalid');
    if (title === chat.title) return;
    renameBtn.disabled = true;
    try {
      await app.renameGroup(chat.id, title);
      chat.title = title;
      announce(`Group renamed to ${title}`);
      render();
    } catch (err) {
      renameError.textContent = err.code === 'invalid_title' ? 'The name must be 1 to 100 characters.' : err.message;
      renameError.hidden = false;
    } finally {
      renameBtn.disabled = false;
    }
  });

  leaveBtn.addEventListener('click', async () => {
    const owner = myRole() === 'owner' && chat.members.length > 1;
    const ok = await confirmDialog(`Leave “${app.chatTitle(chat)}”? You will no longer get its messages.${owner ? ' You are its owner: the longest-standing admin (or member) becomes the owner.' : ''}`, 'Leave group');
    if (!ok) return leaveBtn.focus();
    leaveBtn.disabled = true;
    try {
      await app.leaveGroup(chat.id);
      close();
      toast(`You left “${app.chatTitle(chat)}”.`);
    } catch (err) {
      leaveBtn.disabled = false;
      toast(`Could not leave the group: ${err.message}`, 'error');
    }
  });

  // ---------- mute (both kinds of chat) ----------
  const muteSwitch = h('button', {
    type: 'button', role: 'switch', class: 'toggle-switch mute-switch', 'aria-checked': chat.muted ? 'true' : 'false',
    'aria-describedby': 'mute-note', dataset: { focusKey: 'mute' },
  }, h('span', { class: 'toggle-track', 'aria-hidden': 'true' }, h('span', { class: 'toggle-thumb' })),
  h('span', { class: 'toggle-label' }, 'Mute notifications'));
  const muteNote = h('p', { class: 'muted small', id: 'mute-note' });
  const renderMute = () => {
    muteSwitch.setAttribute('aria-checked', chat.muted ? 'true' : 'false');
    muteNote.textContent = chat.muted
      ? 'Muted: no notifications for this chat while Parley is closed. New messages still show here.'
      : 'You get notifications for this chat while Parley is closed or in the background.';
  };
  muteSwitch.addEventListener('click', async () => {
    const muted = !chat.muted;
    muteSwitch.disabled = true;
    try {
      await app.setMuted(chat.id, muted);
      announce(muted ? 'Notifications for this chat are muted' : 'Notifications for this chat are on');
    } catch (err) {
      toast(`Could not ${muted ? 'mute' : 'unmute'} this chat: ${err.message}`, 'error');
    }
    muteSwitch.disabled = false;
    renderMute();
    muteSwitch.focus();
  });

  // ---------- a direct chat: block / unblock ----------
  const peer = isGroup ? null : app.peerOf(chat);
  function renderBlock() {
    if (!peer) return;
    const name = nameOf(peer);
    const blocked = app.isBlocked(peer.id);
    blockBtn.textContent = blocked ? `Unblock ${name}` : `Block ${name}`;
    blockBtn.classList.toggle('danger', !blocked);
    blockNote.textContent = blocked
      ? `You blocked ${name}: they cannot send you messages here, call you, add you to groups or see when you are online.`
      : `Blocking ${name} stops their messages and calls to you and hides when you are online. They are not told.`;
  }
  blockBtn.addEventListener('click', async () => {
    const blocked = app.isBlocked(peer.id);
    const name = nameOf(peer);
    if (!blocked) {
      const ok = await confirmDialog(`Block ${name}? They will not be able to message or call you, add you to groups or see when you are online.`, 'Block');
      if (!ok) return blockBtn.focus();
    }
    blockBtn.disabled = true;
    try {
      if (blocked) await app.unblock(peer.id);
      else await app.block(peer.id);
      announce(blocked ? `${name} unblocked` : `${name} blocked`);
    } catch (err) {
      toast(`Could not ${blocked ? 'unblock' : 'block'} ${name}: ${err.message}`, 'error');
    }
    blockBtn.disabled = false;
    renderBlock();
    blockBtn.focus();
  });
  if (peer) {
    app.loadBlockedIds().then(renderBlock, () => {
      blockNote.textContent = 'Could not load whom you blocked.';
    });
    offs.push(app.on('blocked', renderBlock));
  }

  // ---------- one member ----------
  function memberRow(m) {
    const u = { ...(app.user(m.id) || {}), ...m };
    const isMe = u.id === app.me.id;
    const name = nameOf(u);
    const role = m.role || 'member';
    const fp = h('code', { class: 'fingerprint', 'aria-label': `${name}'s key fingerprint` }, 'loading…');
    const actions = h('div', { class: 'member-actions' });
    const row = h('li', { class: 'member', dataset: { userId: u.id } },
      avatar(name, u.id, { online: isMe ? null : !!u.online }),
      h('div', { class: 'member-main' },
        h('div', { class: 'member-name' }, h('strong', {}, name), isMe ? h('span', { class: 'muted' }, ' (you)') : null,
          isGroup && role !== 'member' ? h('span', { class: `tag role-${role}` }, ROLE_LABEL[role]) : null),
        h('div', { class: 'muted small' }, isMe ? 'this device' : lastSeen(u)),
        fp),
      actions);
    if (isGroup && !isMe) {
      const mine = myRole();
      // the owner sets roles; admins remove members (the owner removes anyone but
      // themself); the server checks the same rules
      if (mine === 'owner' && role !== 'owner') {
        const toAdmin = role !== 'admin';
        const b = h('button', {
          type: 'button', class: 'btn small', dataset: { focusKey: `role-${u.id}` },
          // the visible words first, so speech input ("click Make admin") finds it
          'aria-label': toAdmin ? `Make admin: ${name}` : `Make member: ${name}`,
        }, toAdmin ? 'Make admin' : 'Make member');
        b.addEventListener('click', () => act(b, () => app.setRole(chat.id, u.id, toAdmin ? 'admin' : 'member'),
          toAdmin ? `${name} is now an admin` : `${name} is now a member`));
        actions.append(b);
      }
      if (role !== 'owner' && (mine === 'owner' || (mine === 'admin' && role === 'member'))) {
        const b = h('button', { type: 'button', class: 'btn small danger', dataset: { focusKey: `remove-${u.id}` }, 'aria-label': `Remove ${name}` }, 'Remove');
        b.addEventListener('click', async () => {
          const ok = await confirmDialog(`Remove ${name} from “${app.chatTitle(chat)}”? They keep the messages up to now but see nothing after.`, 'Remove');
          if (!ok) return b.focus();
          act(b, () => app.removeMember(chat.id, u.id), `${name} was removed`);
        });
        actions.append(b);
      }
    }
    const warn = e2ee.keyWarnings()[u.id];
    if (warn && !isMe) {
      const ok = h('button', { type: 'button', class: 'btn small' }, 'I verified the new key');
      ok.addEventListener('click', () => {
        e2ee.acknowledgeKey(u.id);
        render();
      });
      row.querySelector('.member-main').append(h('div', { class: 'key-warning', role: 'alert' },
        h('span', { class: 'icon', html: icons.warn }),
        h('span', {}, ` ${name}'s key changed. Previous fingerprint: `, h('code', {}, fingerprintGroups(warn.previous))), ok));
    }
    if (name === DELETED_NAME) fp.textContent = 'no key (account deleted)';
    else {
      (isMe ? Promise.resolve({ fingerprint: e2ee.myFingerprint() }) : e2ee.publicKeyOf(u.id, { refresh: true }))
        .then((k) => {
          fp.textContent = k?.fingerprint ? fingerprintGroups(k.fingerprint) : 'no encryption key yet';
          fp.dataset.fingerprint = k?.fingerprint || '';
          if (!k?.fingerprint) fp.classList.add('none');
        })
        .catch(() => {
          fp.textContent = 'unavailable (offline?)';
        });
    }
    return row;
  }

  async function act(btn, fn, done) {
    btn.disabled = true;
    try {
      await fn();
      announce(done);
      render();
    } catch (err) {
      btn.disabled = false;
      toast(err.message || 'That did not work.', 'error');
    }
  }

  // ---------- the whole body ----------
  function render() {
    if (chat.removed || !app.chats.has(chat.id)) {
      close();
      return;
    }
    const active = document.activeElement;
    const focusKey = active?.dataset?.focusKey;
    const hadFocus = body.contains(active);
    heading.textContent = isGroup ? app.chatTitle(chat) : 'Contact info';
    if (document.activeElement !== renameInput) renameInput.value = chat.title || '';
    for (const el of [...body.children]) el.remove();
    const enc = app.isEncrypted(chat.id);
    if (isGroup && isAdmin()) body.append(renameForm, renameError);
    renderMute();
    if (!chat.removed) body.append(h('div', { class: 'mute-box' }, h('div', { class: 'toggle-row' }, muteSwitch), muteNote));
    body.append(h('p', { class: 'info-note' },
      h('span', { class: 'icon', html: enc ? icons.lock : icons.unlock }),
      enc
        ? ' Encryption is on: new messages you send here are end-to-end encrypted for every member.'
        : ' Encryption is off in this chat. Turn it on with the lock button in the chat header.'));
    body.append(h('p', { class: 'muted small' }, 'Compare these fingerprints with your contacts (in person or on another channel). If they match, nobody in between can read your encrypted messages.'));
    if (isGroup) {
      body.append(h('h3', { class: 'members-title', id: 'members-title' }, `Members (${chat.members.length})`));
      if (isAdmin()) body.append(add.el);
    }
    const list = h('ul', { class: 'members', role: 'list', 'aria-labelledby': isGroup ? 'members-title' : undefined });
    const sorted = [...chat.members].sort((a, b) => (ROLE_ORDER[a.role || 'member'] - ROLE_ORDER[b.role || 'member'])
      || String(a.username || '').localeCompare(String(b.username || '')));
    for (const m of sorted) list.append(memberRow(m));
    body.append(list);
    if (isGroup) body.append(h('div', { class: 'modal-actions' }, leaveBtn));
    else if (peer) body.append(h('div', { class: 'block-box' }, blockNote, h('div', { class: 'modal-actions' }, blockBtn)));
    // focus stays where it was: on the same control (rebuilt or kept), else the title
    if (!hadFocus) return;
    const again = focusKey ? body.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`) : active.isConnected ? active : null;
    if (again) again.focus();
    else {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }

  offs.push(app.on('chat-updated', ({ chatId }) => {
    if (chatId === chat.id) render();
  }));
  offs.push(() => add.destroy());
  add.onAdded = render;
  render();
  if (peer) renderBlock();
  return { close };
}

/** The "Add people" part of a group's details: search, pick, add. */
function addPeople(app, chat) {
  const selected = new Map();
  const q = h('input', {
    id: 'add-search', type: 'search', autocomplete: 'off', placeholder: 'Type at least 2 characters', 'aria-controls': 'add-found',
  });
  const found = h('ul', { id: 'add-found', class: 'found', role: 'list', 'aria-label': 'People to add' });
  const chips = h('ul', { class: 'chips', role: 'list', 'aria-label': 'People to add' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const addBtn = h('button', { type: 'submit', class: 'btn primary' }, h('span', { class: 'icon', html: icons.userPlus }), ' Add to group');
  const form = h('form', { class: 'add-people stack', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'add-search' }, 'Add people'), q), chips, found, error,
    h('div', { class: 'modal-actions' }, addBtn));
  const part = { el: form, onAdded: null, destroy: () => clearTimeout(timer) };

  let last = [];
  const isMember = (id) => chat.members.some((m) => m.id === id);
  const renderChips = () => {
    clear(chips);
    for (const u of selected.values()) {
      const rm = h('button', { type: 'button', class: 'chip-x', 'aria-label': `Do not add ${u.username}`, html: icons.close });
      rm.addEventListener('click', () => {
        selected.delete(u.id);
        renderChips();
        renderFound(last);
        q.focus();
      });
      chips.append(h('li', { class: 'chip' }, avatar(u.username, u.id, { size: 'xs' }), u.username, rm));
    }
    addBtn.disabled = !selected.size;
  };
  const renderFound = (users) => {
    last = users;
    clear(found);
    for (const u of users) {
      if (isMember(u.id)) continue;
      const id = `add-pick-${u.id}`;
      const cb = h('input', { type: 'checkbox', id, checked: selected.has(u.id) });
      cb.addEventListener('change', () => {
        if (cb.checked) selected.set(u.id, u);
        else selected.delete(u.id);
        renderChips();
      });
      found.append(h('li', {}, h('label', { for: id, class: 'pick' }, cb, avatar(u.username, u.id, { size: 'sm' }), h('span', {}, u.username))));
    }
  };
  let timer;
  q.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = q.value.trim();
      if (text.length < 2) return renderFound([]);
      try {
        renderFound(await app.searchUsers(text));
        error.hidden = true;
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    }, 200);
  });
  q.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') e.preventDefault();
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    if (!selected.size) {
      error.textContent = 'Pick someone to add first.';
      error.hidden = false;
      q.focus();
      return;
    }
    addBtn.disabled = true;
    const names = [...selected.values()].map((u) => u.username).join(', ');
    try {
      await app.addMembers(chat.id, [...selected.keys()]);
      selected.clear();
      q.value = '';
      renderFound([]);
      renderChips();
      announce(`Added ${names}`);
      part.onAdded?.();
      q.focus();
    } catch (err) {
      addBtn.disabled = false;
      error.textContent = err.code === 'forbidden'
        ? `Could not add ${names}: not allowed.`
        : err.code === 'invalid_member' ? `Could not add ${names}: the group would be too large, or someone is already in it.` : err.message;
      error.hidden = false;
    }
  });
  renderChips();
  return part;
}
