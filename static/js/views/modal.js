// A modal <dialog>: a title, a close button, Escape and a click on the backdrop
// close it; focus goes back where it was (the browser does that for showModal()).

import { h, icons } from '../ui.js';

export function modal(title, body, { onClose, wide = false } = {}) {
  const closeBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', html: icons.close });
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const heading = h('h2', { id: titleId }, title);
  const dialog = h('dialog', { class: `modal${wide ? ' wide' : ''}`, 'aria-labelledby': titleId },
    h('header', { class: 'modal-head' }, heading, closeBtn),
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
  return { dialog, close, heading };
}
