// Sign-in and registration screens.

import { h, icons } from '../ui.js';

function field({ id, label, type = 'text', autocomplete, hint, required = true, minlength, maxlength, pattern, inputmode }) {
  const input = h('input', {
    id, name: id, type, autocomplete, required, minlength, maxlength, pattern, inputmode,
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

export function authView(app, mode, navigate) {
  const isLogin = mode === 'login';
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
      else await app.register(v.email.trim(), v.username.trim(), v.password);
      navigate('/', { replace: true });
    } catch (err) {
      error.textContent = friendly(err);
      error.hidden = false;
      submit.disabled = false;
      submit.classList.remove('busy');
      const target = { email_taken: 'email', invalid_email: 'email', username_taken: 'username', invalid_username: 'username', invalid_password: 'password' }[err.code];
      const f = fields.find((x) => x.input.id === target) || fields[0];
      if (target) f.input.setAttribute('aria-invalid', 'true');
      (isLogin ? fields[1] : f).input.focus();
    }
  });

  const other = isLogin
    ? h('p', { class: 'switch' }, 'New to Parley? ', h('a', { href: '/register', 'data-link': true }, 'Create an account'))
    : h('p', { class: 'switch' }, 'Already have an account? ', h('a', { href: '/login', 'data-link': true }, 'Sign in'));

  const view = h('main', { class: 'auth', id: 'main' },
    h('div', { class: 'auth-card' },
      logo(),
      h('h1', { id: 'auth-title' }, isLogin ? 'Welcome back' : 'Create your account'),
      h('p', { class: 'muted lead' }, isLogin ? 'Sign in to continue your conversations.' : 'Private, self-hosted messaging for you and your people.'),
      form,
      other),
    h('p', { class: 'auth-foot muted' }, 'Self-hosted · end-to-end encryption available · voice and video'));
  view.focusFirst = () => fields[0].input.focus();
  return view;
}

function friendly(err) {
  switch (err.code) {
    case 'invalid_credentials': return 'Wrong email/username or password.';
    case 'rate_limited': return 'Too many attempts. Please wait a minute and try again.';
    case 'email_taken': return 'This email is already registered. Try signing in.';
    case 'username_taken': return 'This username is taken. Please pick another one.';
    case 'network': return 'Cannot reach the server. Check your connection and try again.';
    default: return err.message || 'Something went wrong. Please try again.';
  }
}
