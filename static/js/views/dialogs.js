// Modal dialogs: new group, chat details with encryption fingerprints.

import { h, clear, icons, avatar, toast, fingerprintGroups, lastSeen } from '../ui.js';
import * as e2ee from '../e2ee.js';

function modal(title, body, { onClose, wide = false } = {}) {
  const closeBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', html: icons.close });
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dialog = h('dialog', { class: `modal${wide ? ' wide' : ''}`, 'aria-labelledby': titleId },
    h('header', { class: 'modal-head' }, h('h2', { id: titleId }, title), closeBtn),
    body);
  const close = () => {
    dialog.close();
  };
  closeBtn.addEventListener('click', close);
  dialog.addEventListener('close', () => {
    dialog.remove();
    onClose?.();
  });
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) close(); // backdrop
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

export function newGroupDialog(app, navigate) {
  const selected = new Map();
  const title = h('input', { id: 'group-title', type: 'text', required: true, maxlength: 100, autocomplete: 'off' });
  const q = h('input', { id: 'group-search', type: 'search', autocomplete: 'off', placeholder: 'Type at least 2 characters', 'aria-controls': 'group-found' });
  const chips = h('ul', { class: 'chips', role: 'list', 'aria-label': 'Selected members' });
  const found = h('ul', { id: 'group-found', class: 'found', role: 'list', 'aria-label': 'Matching people' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const create = h('button', { type: 'submit', class: 'btn primary' }, 'Create group');
  const form = h('form', { class: 'modal-body stack' },
    h('div', { class: 'field' }, h('label', { for: 'group-title' }, 'Group name'), title),
    h('div', { class: 'field' }, h('label', { for: 'group-search' }, 'Add people'), q),
    chips, found, error,
    h('div', { class: 'modal-actions' }, create));
  const { close } = modal('New group', form);
  title.focus();

  const renderChips = () => {
    clear(chips);
    for (const u of selected.values()) {
      const rm = h('button', { type: 'button', class: 'chip-x', 'aria-label': `Remove ${u.username}`, html: icons.close });
      rm.addEventListener('click', () => {
        selected.delete(u.id);
        renderChips();
        renderFound(lastResults);
      });
      chips.append(h('li', { class: 'chip' }, avatar(u.username, u.id, { size: 'xs' }), u.username, rm));
    }
  };
  let lastResults = [];
  const renderFound = (users) => {
    lastResults = users;
    clear(found);
    for (const u of users) {
      const id = `pick-${u.id}`;
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
    if (!title.value.trim()) {
      error.textContent = 'Give the group a name.';
      error.hidden = false;
      title.focus();
      return;
    }
    if (!selected.size) {
      error.textContent = 'Add at least one person.';
      error.hidden = false;
      q.focus();
      return;
    }
    create.disabled = true;
    try {
      const chat = await app.createGroup(title.value.trim(), [...selected.keys()]);
      close();
      navigate(`/chat/${chat.id}`);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      create.disabled = false;
    }
  });
}

export function chatInfoDialog(app, chat) {
  const body = h('div', { class: 'modal-body stack' });
  const { close } = modal(chat.kind === 'group' ? app.chatTitle(chat) : 'Contact info', body, { wide: true });

  const render = async () => {
    clear(body);
    const enc = app.isEncrypted(chat.id);
    body.append(h('p', { class: 'info-note' },
      h('span', { class: 'icon', html: enc ? icons.lock : icons.unlock }),
      enc
        ? ' Encryption is on: new messages you send here are end-to-end encrypted for every member.'
        : ' Encryption is off in this chat. Turn it on with the lock button in the chat header.'));
    body.append(h('p', { class: 'muted small' }, 'Compare these fingerprints with your contacts (in person or on another channel). If they match, nobody in between can read your encrypted messages.'));
    const list = h('ul', { class: 'members', role: 'list' });
    body.append(list);
    const warnings = e2ee.keyWarnings();
    for (const m of chat.members) {
      const u = app.user(m.id) || m;
      const isMe = u.id === app.me.id;
      const fp = h('code', { class: 'fingerprint', 'aria-label': `${u.username}'s key fingerprint` }, 'loading…');
      const row = h('li', { class: 'member' },
        avatar(u.username, u.id, { online: isMe ? null : !!u.online }),
        h('div', { class: 'member-main' },
          h('div', {}, h('strong', {}, u.username), isMe ? h('span', { class: 'muted' }, ' (you)') : null),
          h('div', { class: 'muted small' }, isMe ? 'this device' : lastSeen(u)),
          fp));
      const warn = warnings[u.id];
      if (warn && !isMe) {
        const ok = h('button', { type: 'button', class: 'btn small' }, 'I verified the new key');
        ok.addEventListener('click', () => {
          e2ee.acknowledgeKey(u.id);
          render();
        });
        row.querySelector('.member-main').append(h('div', { class: 'key-warning', role: 'alert' },
          h('span', { class: 'icon', html: icons.warn }),
          h('span', {}, ` ${u.username}'s key changed. Previous fingerprint: `, h('code', {}, fingerprintGroups(warn.previous))), ok));
      }
      list.append(row);
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
  };
  render();
  return { close };
}

export function confirmDialog(text, okText = 'OK') {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: 'btn primary' }, okText);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    let result = false;
    const { close } = modal('Please confirm', h('div', { class: 'modal-body stack' }, h('p', {}, text), h('div', { class: 'modal-actions' }, cancel, ok)), {
      onClose: () => resolve(result),
    });
    ok.addEventListener('click', () => {
      result = true;
      close();
    });
    cancel.addEventListener('click', close);
    ok.focus();
  });
}

export { toast };
