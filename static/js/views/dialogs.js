// Modal dialogs: new group, confirmations. (A chat's details are in details.js.)

import { h, clear, icons, avatar, toast } from '../ui.js';
import { modal } from './modal.js';

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
