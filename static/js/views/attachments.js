// Sending photos and files from the composer: the "Attach file" button (a hidden
// multiple file input), pasting files into the composer, dropping them on the chat
// (a drop target shows while dragging). Chosen files wait in a tray above the
// composer — previews, an optional caption, a remove button each — until Send; then
// each is uploaded with a progress bar and a Cancel button and sent as its own
// message (the caption goes with the first). In an encrypted chat each file is
// encrypted in the browser first (media.js).

import { h, clear, icons, announce } from '../ui.js';
import {
  uploadMedia, UploadCancelled, humanSize, encryptFile, isPicture, rememberLocal,
} from '../media.js';

const MAX_ITEMS = 10;

/**
 * `chatEl` gets the drop target; `composerInput` the paste handler. `reply()` is the
 * message the composer answers now (or null); `onSent()` runs when the tray is sent.
 */
export function attachments(app, chatId, { chatEl, composerInput, reply, onSent }) {
  const items = []; // { file, preview (object URL or null) }
  let uploading = null; // { abort, cancelled } while a file is on its way
  let dragDepth = 0;
  const uid = Math.random().toString(36).slice(2);

  const button = h('button', {
    type: 'button', class: 'icon-btn attach-btn', 'aria-label': 'Attach file', title: 'Attach photos or files', html: icons.clip,
  });
  const fileInput = h('input', { type: 'file', multiple: true, hidden: true, tabindex: '-1', class: 'attach-input' });

  const list = h('ul', { class: 'tray-items', 'aria-label': 'Files to send' });
  const captionId = `tray-caption-${uid}`;
  const captionInput = h('input', {
    id: captionId, type: 'text', class: 'tray-caption', placeholder: 'Add a caption (optional)', maxlength: '4000', autocomplete: 'off',
    enterkeyhint: 'send',
  });
  const sendBtn = h('button', { type: 'button', class: 'btn primary tray-send' }, h('span', { class: 'icon', html: icons.send }), 'Send');
  const discardBtn = h('button', { type: 'button', class: 'btn ghost tray-discard' }, 'Discard');
  const note = h('p', { class: 'tray-note' });
  const error = h('p', { class: 'tray-error', role: 'alert', hidden: true });
  const barFill = h('span', { class: 'tray-bar-fill' });
  const bar = h('div', {
    class: 'tray-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', 'aria-label': 'Upload progress',
  }, barFill);
  const progressText = h('span', { class: 'tray-progress-text' });
  const cancelBtn = h('button', { type: 'button', class: 'btn small tray-cancel' }, 'Cancel upload');
  const progress = h('div', { class: 'tray-progress', hidden: true }, h('div', { class: 'tray-progress-line' }, progressText, cancelBtn), bar);
  const tray = h('div', { class: 'attach-tray', role: 'group', 'aria-label': 'Attachments to send', hidden: true },
    list,
    h('div', { class: 'tray-caption-row' }, h('label', { for: captionId, class: 'sr-only' }, 'Caption'), captionInput),
    note, error, progress,
    h('div', { class: 'tray-actions' }, discardBtn, sendBtn));
  const dropTarget = h('div', { class: 'drop-target', 'aria-hidden': 'true' },
    h('div', { class: 'drop-box' }, h('span', { class: 'icon', html: icons.clip }), h('span', {}, 'Drop files to attach them')));

  function render() {
    clear(list);
    for (const item of items) {
      const name = item.file.name || 'file';
      const rm = h('button', { type: 'button', class: 'icon-btn tray-remove', 'aria-label': `Remove ${name}`, html: icons.close });
      rm.disabled = !!uploading;
      rm.addEventListener('click', () => removeItem(item));
      list.append(h('li', { class: 'tray-item' },
        item.preview
          ? h('img', { class: 'tray-thumb', src: item.preview, alt: '' })
          : h('span', { class: 'tray-file-icon', html: icons.file }),
        h('span', { class: 'tray-item-text' }, h('span', { class: 'tray-name' }, name), h('span', { class: 'tray-size' }, humanSize(item.file.size))),
        rm));
    }
    tray.hidden = !items.length;
    sendBtn.disabled = !!uploading || !items.length;
    discardBtn.disabled = !!uploading;
    captionInput.disabled = !!uploading;
    progress.hidden = !uploading;
    note.textContent = app.isEncrypted(chatId) ? '🔒 Files are encrypted in this browser before they are uploaded.' : '';
    note.hidden = !note.textContent;
    sendBtn.lastChild.textContent = items.length > 1 ? `Send ${items.length} files` : 'Send';
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  function addFiles(files) {
    const chosen = [...(files || [])].filter((f) => f instanceof Blob);
    if (!chosen.length) return;
    showError('');
    let dropped = 0;
    for (const file of chosen) {
      if (items.length >= MAX_ITEMS) {
        dropped += 1;
        continue;
      }
      const preview = /^image\/(png|jpeg|gif|webp)$/.test(file.type) ? URL.createObjectURL(file) : null;
      items.push({ file, preview });
    }
    if (dropped) showError(`At most ${MAX_ITEMS} files at a time: ${dropped} left out.`);
    render();
    announce(`${items.length} ${items.length === 1 ? 'file' : 'files'} ready to send. Add a caption or press Send.`);
    if (!uploading) captionInput.focus();
  }

  function removeItem(item) {
    const i = items.indexOf(item);
    if (i < 0) return;
    items.splice(i, 1);
    if (item.preview) URL.revokeObjectURL(item.preview);
    render();
    announce(`Removed ${item.file.name || 'file'}`);
    if (items.length) (list.querySelectorAll('.tray-remove')[Math.min(i, items.length - 1)] || captionInput).focus();
    else composerInput.focus();
  }

  function discard() {
    if (uploading) return;
    for (const it of items.splice(0)) if (it.preview) URL.revokeObjectURL(it.preview);
    captionInput.value = '';
    showError('');
    render();
    composerInput.focus();
  }

  function setProgress(name, fraction, which) {
    const pct = Math.round(fraction * 100);
    bar.setAttribute('aria-valuenow', String(pct));
    bar.setAttribute('aria-valuetext', `${pct}%`);
    bar.setAttribute('aria-label', `Uploading ${name}`);
    barFill.style.setProperty('width', `${pct}%`);
    progressText.textContent = `${which}Uploading ${name}… ${pct}%`;
  }

  async function send() {
    if (uploading || !items.length) return;
    showError('');
    const text = captionInput.value.trim();
    const encrypted = app.isEncrypted(chatId);
    const answering = reply();
    // what is in the tray now; files added meanwhile wait for the next Send
    const batch = items.slice();
    const total = batch.length;
    let sent = 0;
    uploading = { abort: null, cancelled: false };
    render();
    cancelBtn.focus();
    try {
      for (const item of batch) {
        const name = item.file.name || 'file';
        const which = total > 1 ? `${sent + 1} of ${total}: ` : '';
        setProgress(name, 0, which);
        let body = item.file;
        let secret = null;
        if (encrypted) {
          progressText.textContent = `${which}Encrypting ${name}…`;
          ({ blob: body, secret } = await encryptFile(item.file));
          if (uploading.cancelled) throw new UploadCancelled();
        }
        const up = uploadMedia(body, {
          chatId, encrypted, name: encrypted ? 'encrypted' : name, onProgress: (f) => setProgress(name, f, which),
        });
        uploading.abort = up.abort;
        const media = await up.promise;
        uploading.abort = null;
        // our own photo shows from the file we have (no download, no decryption)
        if (item.preview || isPicture(secret)) rememberLocal(media.mediaId, item.file);
        const kind = encrypted ? (isPicture(secret) ? 'image' : 'file') : media.kind;
        const ok = await app.sendMedia(chatId, media, {
          caption: sent === 0 ? text : '', secret, kind, replyToId: answering?.id ?? null,
        });
        if (!ok) break; // app said why (send-error)
        const at = items.indexOf(item);
        if (at >= 0) items.splice(at, 1);
        if (item.preview) URL.revokeObjectURL(item.preview);
        sent += 1;
        if (sent === 1) captionInput.value = '';
        render();
      }
    } catch (e) {
      if (e instanceof UploadCancelled) announce('Upload cancelled');
      else showError(e.message || String(e));
    } finally {
      uploading = null;
      progressText.textContent = '';
      render();
    }
    if (sent) onSent?.(sent);
    if (!items.length) {
      captionInput.value = '';
      composerInput.focus();
    } else if (error.hidden) sendBtn.focus();
    else captionInput.focus();
  }

  function cancelUpload() {
    if (!uploading) return;
    uploading.cancelled = true;
    uploading.abort?.();
  }

  // ---------- wiring ----------
  button.addEventListener('click', () => {
    fileInput.value = '';
    fileInput.click();
  });
  fileInput.addEventListener('change', () => addFiles(fileInput.files));
  sendBtn.addEventListener('click', send);
  discardBtn.addEventListener('click', discard);
  cancelBtn.addEventListener('click', cancelUpload);
  captionInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  tray.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    e.preventDefault();
    e.stopPropagation();
    if (uploading) cancelUpload();
    else discard();
  });
  const onPaste = (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (!files.length) return; // text: the usual paste
    e.preventDefault();
    addFiles(files);
  };
  composerInput.addEventListener('paste', onPaste);
  captionInput.addEventListener('paste', onPaste);

  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  chatEl.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth += 1;
    chatEl.classList.add('dragging');
  });
  chatEl.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    chatEl.classList.add('dragging');
  });
  chatEl.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) chatEl.classList.remove('dragging');
  });
  chatEl.addEventListener('drop', (e) => {
    dragDepth = 0;
    chatEl.classList.remove('dragging');
    if (!e.dataTransfer?.files?.length) return;
    e.preventDefault();
    addFiles(e.dataTransfer.files);
  });

  render();
  return {
    button,
    fileInput,
    tray,
    dropTarget,
    addFiles,
    refresh: render,
    busy: () => !!uploading,
    destroy() {
      cancelUpload();
      for (const it of items.splice(0)) if (it.preview) URL.revokeObjectURL(it.preview);
    },
  };
}
