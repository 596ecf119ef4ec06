// Sign-in, registration (open, by invitation or closed, as the server says) and the
// password reset a link from the operator opens.

import { h, icons, clear } from '../ui.js';
import { get, post } from '../api.js';

export function field({ id, label, type = 'text', autocomplete, hint, required = true, minlength, maxlength, pattern, inputmode, value }) {
  const input = h('input', {
    id, name: id, type, autocomplete, required, minlength, maxlength, pattern, inputmode, value,
    'aria-describedby': hint ? `${id}-hint` : undefined, autocapitalize: 'off', spellcheck: 'false',
  });
  return {
    input,
    el: h('div', { class: 'field' },
      h('label', { for: id }, label),
      input,
      hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null),
  };
}

function logo() {
  return h('div', { class: 'brand' },
    h('span', { class: 'brand-mark', html: icons.chat }),
    h('span', { class: 'brand-name' }, 'Parley'));
}

/** The invite of a `/register?invite=…` link ('' when none). */
function inviteFromUrl() {
  return (new URLSearchParams(location.search).get('invite') || '').trim().slice(0, 256);
}

export function authView(app, mode, navigate) {
  const isLogin = mode === 'login';
  const notice = isLogin ? app.takeNotice() : null;
  const invite = isLogin ? '' : inviteFromUrl();
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary wide' }, isLogin ? 'Sign in' : 'Create account');
  const fields = isLogin
    ? [
      field({ id: 'login', label: 'Email or username', autocomplete: 'username', maxlength: 254 }),
      field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', maxlength: 128 }),
    ]
    : [
      field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email', maxlength: 254, inputmode: 'email' }),
      field({
        id: 'username', label: 'Username', autocomplete: 'username', minlength: 3, maxlength: 32,
        pattern: '[A-Za-z0-9_.]{3,32}', hint: '3–32 characters: letters, digits, _ and .',
      }),
      field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128, hint: 'At least 8 characters.' }),
    ];
  // The invite: from the link, or typed in when the server asks for one. Shown only
  // when the server is invite-only or a link brought one.
  const inviteField = isLogin ? null : field({
    id: 'invite', label: 'Invite code', autocomplete: 'off', required: false, maxlength: 256, value: invite || undefined,
    hint: 'From the invite link you were sent.',
  });
  if (inviteField) {
    inviteField.el.hidden = !invite;
    fields.push(inviteField);
  }
  const form = h('form', { class: 'auth-form', novalidate: true, 'aria-labelledby': 'auth-title' },
    ...fields.map((f) => f.el), error, submit);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    const bad = fields.find((f) => !f.input.checkValidity());
    if (bad) {
      error.textContent = bad.input.validationMessage || 'Please check this field.';
      error.hidden = false;
      bad.input.setAttribute('aria-invalid', 'true');
      bad.input.focus();
      return;
    }
    fields.forEach((f) => f.input.removeAttribute('aria-invalid'));
    submit.disabled = true;
    submit.classList.add('busy');
    const v = Object.fromEntries(fields.map((f) => [f.input.id, f.input.value]));
    try {
      if (isLogin) await app.login(v.login.trim(), v.password);
      else await app.register(v.email.trim(), v.username.trim(), v.password, v.invite.trim() || null);
      navigate('/', { replace: true });
    } catch (err) {
      // a missing invite is refused like a bad one: say what is missing
      error.textContent = err.code === 'invite_invalid' && !v.invite?.trim() ? friendly({ code: 'invite_required' }) : friendly(err);
      error.hidden = false;
      submit.disabled = false;
      submit.classList.remove('busy');
      const target = {
        email_taken: 'email', invalid_email: 'email', username_taken: 'username', invalid_username: 'username',
        invalid_password: 'password', invite_invalid: 'invite', invite_required: 'invite',
      }[err.code];
      if (target === 'invite') inviteField.el.hidden = false;
      const f = fields.find((x) => x.input.id === target) || fields[0];
      if (target) f.input.setAttribute('aria-invalid', 'true');
      (isLogin ? fields[1] : f).input.focus();
    }
  });

  const other = isLogin
    ? h('p', { class: 'switch' }, 'New to Parley? ', h('a', { href: '/register', 'data-link': true }, 'Create an account'))
    : h('p', { class: 'switch' }, 'Already have an account? ', h('a', { href: '/login', 'data-link': true }, 'Sign in'));

  const noticeEl = notice ? h('p', { class: 'auth-notice', role: 'status' }, notice) : null;
  const modeNote = h('p', { class: 'auth-mode', role: 'status', hidden: true });
  const card = h('div', { class: 'auth-card' },
    logo(),
    h('h1', { id: 'auth-title' }, isLogin ? 'Welcome back' : 'Create your account'),
    h('p', { class: 'muted lead' }, isLogin ? 'Sign in to continue your conversations.' : 'Private, self-hosted messaging for you and your people.'),
    noticeEl,
    modeNote,
    form,
    other);
  const view = h('main', { class: 'auth', id: 'main' },
    card,
    h('p', { class: 'auth-foot muted' }, 'Self-hosted · end-to-end encryption available · voice and video'));
  view.focusFirst = () => fields[0].input.focus();

  // How this server lets people in: open, by invitation, or not at all. The form
  // stays usable when the server cannot say (an older server is open).
  if (!isLogin) {
    get('/api/auth/registration').then((r) => {
      if (!view.isConnected) return;
      const m = r?.mode;
      if (m === 'closed') {
        modeNote.textContent = 'Registration is closed on this server. Ask its administrator for an account.';
        modeNote.hidden = false;
        form.hidden = true;
        modeNote.classList.add('closed');
      } else if (m === 'invite') {
        inviteField.el.hidden = false;
        inviteField.input.required = true;
        modeNote.textContent = invite
          ? 'You were invited: create your account below.'
          : 'Registration on this server is by invitation only. Open the invite link you were sent, or paste its code below.';
        modeNote.hidden = false;
      }
    }, () => {});
  }
  return view;
}

/**
 * `/reset?token=…`: the one-time link `parley admin user reset-password` prints. A new
 * password (twice), then the sign-in page.
 */
export function resetView(app, navigate) {
  const token = (new URLSearchParams(location.search).get('token') || '').trim();
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const pw = field({ id: 'new-password', label: 'New password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128, hint: 'At least 8 characters.' });
  const again = field({ id: 'confirm-password', label: 'Repeat the new password', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 128 });
  const submit = h('button', { type: 'submit', class: 'btn primary wide' }, 'Set new password');
  const form = h('form', { class: 'auth-form', novalidate: true, 'aria-labelledby': 'auth-title' }, pw.el, again.el, error, submit);
  const body = h('div', {}, form);
  const fail = (text, input) => {
    error.textContent = text;
    error.hidden = false;
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    [pw, again].forEach((f) => f.input.removeAttribute('aria-invalid'));
    if (!pw.input.checkValidity()) return fail(pw.input.validationMessage || 'Choose a password of at least 8 characters.', pw.input);
    if (pw.input.value !== again.input.value) return fail('The two passwords are not the same.', again.input);
    submit.disabled = true;
    submit.classList.add('busy');
    try {
      await post('/api/auth/reset', { token, newPassword: pw.input.value });
      clear(body);
      const link = h('a', { href: '/login', 'data-link': true, class: 'btn primary wide' }, 'Sign in');
      body.append(h('p', { class: 'auth-notice', role: 'status' }, 'Your password was changed. Sign in with the new one.'), link);
      link.focus();
    } catch (err) {
      submit.disabled = false;
      submit.classList.remove('busy');
      fail(err.code === 'invalid_password' ? 'Choose a password of 8 to 128 characters.' : friendly(err), err.code === 'invalid_password' ? pw.input : null);
    }
  });
  const view = h('main', { class: 'auth', id: 'main' },
    h('div', { class: 'auth-card' },
      logo(),
      h('h1', { id: 'auth-title' }, 'Choose a new password'),
      token
        ? h('p', { class: 'muted lead' }, 'This link works once, for 24 hours. Every device signed in to the account is signed out.')
        : h('p', { class: 'form-error', role: 'alert' }, 'This reset link is incomplete. Open the whole link you were given.'),
      token ? body : null,
      h('p', { class: 'switch' }, h('a', { href: '/login', 'data-link': true }, 'Back to sign in'))));
  view.focusFirst = () => (token ? pw.input.focus() : view.querySelector('a')?.focus());
  return view;
}

function friendly(err) {
  switch (err.code) {
    case 'invalid_credentials': return 'Wrong email/username or password.';
    case 'rate_limited': return 'Too many attempts. Please wait a minute and try again.';
    case 'email_taken': return 'This email is already registered. Try signing in.';
    case 'username_taken': return 'This username is taken. Please pick another one.';
    case 'invite_invalid': return 'This invite is not valid: it was used up, has expired or was revoked. Ask for a new one.';
    case 'invite_required': return 'Registration on this server is by invitation only. Open the invite link you were sent.';
    case 'registration_closed': return 'Registration is closed on this server. Ask its administrator for an account.';
    case 'reset_invalid':
    case 'invalid_reset_token': return 'This reset link is not valid any more (used, expired or replaced). Ask for a new one.';
    case 'network': return 'Cannot reach the server. Check your connection and try again.';
    default: return err.message || 'Something went wrong. Please try again.';
  }
}
