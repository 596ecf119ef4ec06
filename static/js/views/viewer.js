// The image viewer: a modal dialog over the chat showing one photo at full size,
// named after it. Escape (or Close) closes it and gives the focus back to the photo
// that opened it; ArrowLeft / ArrowRight (and the two buttons) move between the
// chat's photos; Download saves the original.

import { h, icons, toast, announce } from '../ui.js';

let open = null; // the viewer shown now: { close }

export function closeViewer() {
  open?.close();
}

/**
 * Opens the viewer on `items[index]`; each item is `{name, load() → Promise<url>,
 * save() → Promise}`. `opener` gets the focus back when it closes (or, when it was
 * re-rendered meanwhile, `fallbackFocus()`).
 */
export function openViewer(items, index, { opener, fallbackFocus } = {}) {
  closeViewer();
  if (!items.length) return;
  const titleId = `viewer-title-${Math.random().toString(36).slice(2)}`;
  const title = h('h2', { class: 'viewer-title', id: titleId });
  const count = h('span', { class: 'viewer-count' });
  const img = h('img', { class: 'viewer-img', alt: '' });
  const status = h('p', { class: 'viewer-status', role: 'status' });
  const prev = h('button', { type: 'button', class: 'icon-btn viewer-nav viewer-prev', 'aria-label': 'Previous photo', html: icons.back });
  const next = h('button', { type: 'button', class: 'icon-btn viewer-nav viewer-next', 'aria-label': 'Next photo', html: icons.next });
  const download = h('button', { type: 'button', class: 'btn small viewer-download' }, h('span', { class: 'icon', html: icons.download }), 'Download');
  const closeBtn = h('button', { type: 'button', class: 'icon-btn viewer-close', 'aria-label': 'Close viewer', html: icons.close });
  const dialog = h('dialog', { class: 'viewer', 'aria-modal': 'true', 'aria-labelledby': titleId },
    h('header', { class: 'viewer-head' }, h('div', { class: 'viewer-heading' }, title, count), download, closeBtn),
    h('div', { class: 'viewer-stage' }, prev, h('figure', { class: 'viewer-figure' }, img, status), next));

  let at = index;
  function show(i) {
    at = Math.max(0, Math.min(items.length - 1, i));
    const item = items[at];
    title.textContent = item.name;
    count.textContent = items.length > 1 ? `Photo ${at + 1} of ${items.length}` : '';
    dialog.dataset.index = String(at);
    // aria-disabled, not disabled: a focused button that becomes disabled drops the focus
    prev.setAttribute('aria-disabled', String(at === 0));
    next.setAttribute('aria-disabled', String(at === items.length - 1));
    prev.hidden = next.hidden = items.length < 2;
    img.alt = item.name;
    img.removeAttribute('src');
    img.hidden = true;
    status.textContent = 'Loading…';
    const want = at;
    item.load().then(
      (url) => {
        if (want !== at) return;
        img.onload = () => {
          if (want !== at) return;
          img.hidden = false;
          status.textContent = '';
        };
        img.onerror = () => {
          if (want === at) status.textContent = 'This photo cannot be shown.';
        };
        img.src = url;
      },
      (e) => {
        if (want === at) status.textContent = `Could not load the photo: ${e.message || e}`;
      },
    );
  }

  function close() {
    if (!dialog.open) return;
    dialog.close();
  }
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (open?.dialog === dialog) open = null;
    const back = opener?.isConnected ? opener : fallbackFocus?.();
    back?.focus({ preventScroll: true });
  });
  dialog.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      e.preventDefault();
      const to = at + (e.key === 'ArrowRight' ? 1 : -1);
      if (to < 0 || to >= items.length) return;
      show(to);
      announce(`${items[at].name}, photo ${at + 1} of ${items.length}`);
    }
  });
  // a click on the dark backdrop (outside the stage's content) closes it
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog || e.target.classList.contains('viewer-stage')) close();
  });
  prev.addEventListener('click', () => show(at - 1));
  next.addEventListener('click', () => show(at + 1));
  closeBtn.addEventListener('click', close);
  download.addEventListener('click', async () => {
    const item = items[at];
    download.disabled = true;
    try {
      await item.save();
    } catch (e) {
      toast(`Could not download ${item.name}: ${e.message || e}`, 'error');
    } finally {
      download.disabled = false;
    }
  });

  document.body.append(dialog);
  dialog.showModal();
  show(index);
  closeBtn.focus();
  open = { dialog, close };
  return open;
}
