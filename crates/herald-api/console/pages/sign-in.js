// The sign-in page: a tenant API key is exchanged once for a session cookie
// and never kept by the page.

import { ApiError, signIn } from '../api.js';
import { h, messageOf } from '../ui.js';

export function render({ main, notice, onSignedIn }) {
  const error = h('div', { class: 'form-error', role: 'alert', id: 'sign-in-error' });
  if (notice) error.append(h('p', {}, notice));
  const input = h('input', {
    id: 'tenant-api-key', name: 'key', type: 'password', required: true,
    autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'sign-in-help sign-in-error',
  });
  const button = h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in');
  const form = h('form', { class: 'sign-in-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'tenant-api-key' }, 'Tenant API key'),
      input,
      h('p', { class: 'hint', id: 'sign-in-help' },
        'The key starts with hsk_. It is exchanged for a session cookie and not stored by this page. ',
        'Customers open the console with the link their provider gives them.')),
    error,
    h('div', { class: 'actions' }, button));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.replaceChildren(h('p', {}, 'Enter the tenant API key.'));
      input.focus();
      return;
    }
    button.disabled = true;
    error.replaceChildren();
    try {
      const session = await signIn({ key });
      input.value = '';
      onSignedIn(session);
    } catch (failure) {
      const text = failure instanceof ApiError && failure.status === 401 ? failure.message : messageOf(failure);
      error.replaceChildren(h('p', {}, text));
      input.select();
      input.focus();
    } finally {
      button.disabled = false;
    }
  });

  main.replaceChildren(h('div', { class: 'sign-in' },
    h('h1', {}, 'Sign in to Herald'),
    form));
  input.focus();
}
