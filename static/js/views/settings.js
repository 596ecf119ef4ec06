// The settings page (/settings, from the account menu): the profile, a password
// change, the devices signed in (each can be signed out, or all but this one), the
// people blocked, an export of the user's data and the deletion of the account.
// "Notifications" turns Web Push on or off for this device (permission is asked
// only when the user switches it on).
// Every action goes to the server, which has the final word; its errors are shown
// next to the control that caused them.

import { h, clear, icons, avatar, toast, announce } from '../ui.js';
import { confirmDialog } from './dialogs.js';
import { field } from './auth.js';
import { pushPermission, currentSubscription, enablePush, disablePush } from '../pwa.js';

const WHEN = { dateStyle: 'medium', timeStyle: 'short' };

function when(iso) {
  if (!iso) return 'unknown';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? 'unknown' : d.toLocaleString(undefined, WHEN);
}

/** A section of the page: a heading and its content, labelled by the heading. */
function section(id, title, ...children) {
  return h('section', { class: 'settings-section', 'aria-labelledby': id, id: `${id}-section` },
    h('h2', { id }, title), ...children);
}

function formError() {
  return h('p', { class: 'form-error', role: 'alert', hidden: true });
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = false;
}

function busy(btn, on) {
  btn.disabled = on;
  btn.classList.toggle('busy', on);
}

export function settingsView(app) {
  const me = app.me;
  const offs = [];
  const back = h('a', { href: '/', class: 'icon-btn back-btn', 'data-link': true, 'aria-label': 'Back to chats', html: icons.back });
  const title = h('h1', { class: 'chat-title', id: 'settings-title', tabindex: '-1' }, 'Settings');

  // ---------- profile ----------
  const profile = section('settings-profile', 'Profile',
    h('div', { class: 'profile-card' },
      avatar(me.username, me.id, { size: 'sm' }),
      h('dl', { class: 'profile-facts' },
        h('div', {}, h('dt', {}, 'Username'), h('dd', { class: 'profile-username' }, me.username)),
        h('div', {}, h('dt', {}, 'Email'), h('dd', { class: 'profile-email' }, me.email || '—')))));

  // ---------- password ----------
  const current = field({ id: 'current-password', label: 'Current password', type: 'password', autocomplete: 'current-password', maxlength: 128 });
  const next = field({ id: 'new-password', label: 'New password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128, hint: 'At least 8 characters.' });
  const confirmNext = field({ id: 'confirm-password', label: 'Repeat the new password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128 });
  const pwError = formError();
  const pwDone = h('p', { class: 'form-ok', role: 'status' });
  const pwBtn = h('button', { type: 'submit', class: 'btn primary' }, 'Change password');
  const pwForm = h('form', { class: 'settings-form', novalidate: true, 'aria-labelledby': 'settings-password' },
    current.el, next.el, confirmNext.el, pwError, pwDone, h('div', { class: 'form-actions' }, pwBtn));
  const password = section('settings-password', 'Password',
    h('p', { class: 'muted small' }, 'Changing your password signs out every other device.'), pwForm);

  const pwFields = [current, next, confirmNext];
  const pwFail = (text, f) => {
    showError(pwError, text);
    if (f) {
      f.input.setAttribute('aria-invalid', 'true');
      f.input.focus();
    }
  };
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    pwError.hidden = true;
    pwDone.textContent = '';
    pwFields.forEach((f) => f.input.removeAttribute('aria-invalid'));
    if (!current.input.value) return pwFail('Enter your current password.', current);
    if (!next.input.checkValidity()) return pwFail('The new password must be 8 to 128 characters.', next);
    if (next.input.value !== confirmNext.input.value) return pwFail('The two new passwords are not the same.', confirmNext);
    if (next.input.value === current.input.value) return pwFail('The new password is the same as the current one.', next);
    busy(pwBtn, true);
    try {
      await app.changePassword(current.input.value, next.input.value);
      pwFields.forEach((f) => {
        f.input.value = '';
      });
      pwDone.textContent = 'Password changed. Your other devices were signed out.';
      loadSessions();
    } catch (err) {
      if (err.code === 'invalid_credentials' || err.code === 'wrong_password') pwFail('The current password is wrong.', current);
      else if (err.code === 'invalid_password') pwFail('The new password must be 8 to 128 characters.', next);
      else pwFail(err.message || 'The password could not be changed.', null);
    } finally {
      busy(pwBtn, false);
    }
  });

  // ---------- devices ----------
  const sessList = h('ul', { class: 'sessions', role: 'list', 'aria-label': 'Signed-in devices' });
  const sessNote = h('p', { class: 'muted small', role: 'status' });
  const othersBtn = h('button', { type: 'button', class: 'btn' }, 'Sign out of all other devices');
  const devices = section('settings-devices', 'Where you are signed in',
    sessNote, sessList, h('div', { class: 'form-actions' }, othersBtn));

  let sessSeq = 0;
  async function loadSessions() {
    const seq = ++sessSeq;
    sessNote.textContent = 'Loading…';
    let list;
    try {
      list = await app.listSessions();
    } catch (err) {
      if (seq === sessSeq) sessNote.textContent = `Could not load your devices: ${err.message}`;
      return;
    }
    if (seq !== sessSeq || !view.isConnected) return;
    list = Array.isArray(list) ? list : list?.sessions || [];
    // this device first, then the most recently used
    list.sort((a, b) => (b.current - a.current) || (new Date(b.lastSeenAt) - new Date(a.lastSeenAt)));
    sessNote.textContent = list.length > 1 ? `${list.length} devices` : 'Only this device.';
    othersBtn.hidden = list.length < 2;
    const focused = document.activeElement?.dataset?.sessionId;
    clear(sessList);
    for (const s of list) {
      const device = s.device || 'Unknown device';
      const out = h('button', {
        type: 'button', class: 'btn small', dataset: { sessionId: s.id },
        'aria-label': s.current ? `Sign out of this device (${device})` : `Sign out ${device}`,
      }, 'Sign out');
      out.addEventListener('click', () => signOutSession(s, out));
      sessList.append(h('li', { class: `session${s.current ? ' current' : ''}`, dataset: { sessionId: s.id } },
        h('div', { class: 'session-main' },
          h('div', { class: 'session-device' }, h('strong', {}, device),
            s.current ? h('span', { class: 'tag' }, 'This device') : null),
          h('div', { class: 'muted small' }, `Signed in ${when(s.createdAt)} · last active ${when(s.lastSeenAt)}`)),
        out));
    }
    if (focused) sessList.querySelector(`[data-session-id="${CSS.escape(focused)}"] button`)?.focus();
  }

  async function signOutSession(s, btn) {
    if (s.current) {
      await app.logout();
      return;
    }
    busy(btn, true);
    try {
      await app.revokeSession(s.id);
      announce(`${s.device || 'The device'} was signed out`);
      toast('That device was signed out.', 'ok');
    } catch (err) {
      toast(`Could not sign that device out: ${err.message}`, 'error');
    }
    busy(btn, false);
    othersBtn.focus();
    loadSessions();
  }

  othersBtn.addEventListener('click', async () => {
    busy(othersBtn, true);
    try {
      await app.revokeOtherSessions();
      toast('Every other device was signed out.', 'ok');
      announce('Every other device was signed out');
    } catch (err) {
      toast(`Could not sign the other devices out: ${err.message}`, 'error');
    }
    busy(othersBtn, false);
    await loadSessions();
    title.focus();
  });

  // ---------- notifications (Web Push on this device) ----------
  const pushSwitch = h('button', {
    type: 'button', role: 'switch', class: 'toggle-switch', id: 'push-switch', 'aria-checked': 'false',
    'aria-describedby': 'push-note',
  }, h('span', { class: 'toggle-track', 'aria-hidden': 'true' }, h('span', { class: 'toggle-thumb' })),
  h('span', { class: 'toggle-label' }, 'Notifications'));
  const pushNote = h('p', { class: 'muted small', id: 'push-note', role: 'status' });
  const pushError = formError();
  const notifications = section('settings-notifications', 'Notifications',
    h('p', { class: 'muted small' }, 'Get a notification on this device for new messages and calls while Parley is closed or in the background. Messages of encrypted chats only say "New message". Mute a chat in its details.'),
    h('div', { class: 'toggle-row' }, pushSwitch), pushNote, pushError);

  const setSwitch = (on) => pushSwitch.setAttribute('aria-checked', on ? 'true' : 'false');
  async function renderPush() {
    const perm = pushPermission();
    const sub = await currentSubscription();
    setSwitch(!!sub && perm === 'granted');
    pushSwitch.disabled = perm === 'unsupported';
    if (perm === 'unsupported') pushNote.textContent = 'This browser does not support notifications from web apps.';
    else if (perm === 'denied') pushNote.textContent = 'Notifications are blocked for Parley in this browser. Allow them in the site settings to turn them on.';
    else pushNote.textContent = sub ? 'On for this device.' : 'Off for this device.';
  }
  pushSwitch.addEventListener('click', async () => {
    const on = pushSwitch.getAttribute('aria-checked') !== 'true';
    pushError.hidden = true;
    busy(pushSwitch, true);
    pushNote.textContent = on ? 'Turning notifications on…' : 'Turning notifications off…';
    try {
      if (on) {
        await enablePush();
        announce('Notifications are on');
      } else {
        await disablePush();
        announce('Notifications are off');
      }
    } catch (err) {
      showError(pushError, err.message || 'Notifications could not be turned on.');
    }
    busy(pushSwitch, false);
    await renderPush();
    pushSwitch.focus();
  });

  // ---------- blocked people ----------
  const blockedList = h('ul', { class: 'blocked', role: 'list', 'aria-label': 'Blocked people' });
  const blockedNote = h('p', { class: 'muted small', role: 'status' });
  const blocked = section('settings-blocked', 'Blocked people',
    h('p', { class: 'muted small' }, 'Blocked people cannot start a direct chat with you, add you to groups, call you or see when you are online. Block someone from the details of your chat with them.'),
    blockedNote, blockedList);

  let blockedSeq = 0;
  async function loadBlocked() {
    const seq = ++blockedSeq;
    let users;
    try {
      users = await app.blockedUsers();
    } catch (err) {
      if (seq === blockedSeq) blockedNote.textContent = `Could not load the list: ${err.message}`;
      return;
    }
    if (seq !== blockedSeq || !view.isConnected) return;
    clear(blockedList);
    blockedNote.textContent = users.length ? '' : 'You have not blocked anyone.';
    for (const u of users) {
      const name = u.username || 'Deleted account';
      const btn = h('button', { type: 'button', class: 'btn small', 'aria-label': `Unblock ${name}` }, 'Unblock');
      btn.addEventListener('click', async () => {
        busy(btn, true);
        try {
          await app.unblock(u.id);
          toast(`${name} is unblocked.`, 'ok');
        } catch (err) {
          toast(`Could not unblock ${name}: ${err.message}`, 'error');
          busy(btn, false);
        }
      });
      blockedList.append(h('li', { class: 'blocked-user', dataset: { userId: u.id } },
        avatar(name, u.id, { size: 'sm' }), h('span', { class: 'blocked-name' }, name), btn));
    }
  }
  offs.push(app.on('blocked', () => {
    loadBlocked().then(() => {
      if (!view.contains(document.activeElement) || document.activeElement === document.body) title.focus();
    });
  }));

  // ---------- export ----------
  const exportBtn = h('button', { type: 'button', class: 'btn' }, h('span', { class: 'icon', html: icons.download }), ' Export my data');
  const exportNote = h('p', { class: 'muted small', role: 'status' });
  const data = section('settings-data', 'Your data',
    h('p', { class: 'muted small' }, 'Download your profile, your chats and the messages you sent, as a file.'),
    h('div', { class: 'form-actions start' }, exportBtn), exportNote);
  exportBtn.addEventListener('click', async () => {
    busy(exportBtn, true);
    exportNote.textContent = 'Preparing your export…';
    try {
      const { blob, name } = await app.exportData();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      exportNote.textContent = `Downloaded ${name}.`;
    } catch (err) {
      exportNote.textContent = `Could not export your data: ${err.message}`;
    }
    busy(exportBtn, false);
  });

  // ---------- delete account ----------
  const delPw = field({ id: 'delete-password', label: 'Your password', type: 'password', autocomplete: 'current-password', maxlength: 128 });
  const delError = formError();
  const delBtn = h('button', { type: 'submit', class: 'btn danger' }, 'Delete my account');
  const delForm = h('form', { class: 'settings-form', novalidate: true, 'aria-labelledby': 'settings-delete' },
    delPw.el, delError, h('div', { class: 'form-actions' }, delBtn));
  const danger = section('settings-delete', 'Delete account',
    h('div', { class: 'banner warn', role: 'note' },
      h('span', { class: 'icon', html: icons.warn }),
      h('div', { class: 'banner-text' },
        h('strong', {}, 'This cannot be undone. '),
        'Your account is closed at once and every device is signed out. Your email, username, password, encryption key and uploads are erased; your username and email become free for others. Messages you sent stay in other people\'s chats, shown as from "Deleted account". Export your data first if you want to keep it.')),
    delForm);
  delForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    delError.hidden = true;
    delPw.input.removeAttribute('aria-invalid');
    if (!delPw.input.value) {
      showError(delError, 'Enter your password to confirm.');
      delPw.input.setAttribute('aria-invalid', 'true');
      delPw.input.focus();
      return;
    }
    const ok = await confirmDialog('Delete your Parley account for good? Everything listed above is erased and cannot be brought back.', 'Delete account');
    if (!ok) {
      delBtn.focus();
      return;
    }
    busy(delBtn, true);
    try {
      await app.deleteAccount(delPw.input.value); // signs out: the router goes to /login
    } catch (err) {
      busy(delBtn, false);
      const wrong = err.code === 'invalid_credentials' || err.code === 'wrong_password';
      showError(delError, wrong ? 'The password is wrong.' : err.message || 'The account could not be deleted.');
      delPw.input.setAttribute('aria-invalid', 'true');
      delPw.input.focus();
    }
  });

  const view = h('section', { class: 'settings', 'aria-labelledby': 'settings-title' },
    h('header', { class: 'chat-head settings-head' }, back, h('div', { class: 'chat-head-text' }, title)),
    h('div', { class: 'settings-scroll' },
      h('div', { class: 'settings-inner' }, profile, notifications, password, devices, blocked, data, danger)));

  loadSessions();
  loadBlocked();
  renderPush();
  view.focusFirst = () => title.focus();
  view.destroy = () => offs.forEach((f) => f());
  return view;
}
