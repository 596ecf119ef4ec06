// The message menu (role=menu with menuitems) and the reaction picker (a toolbar of
// emoji buttons): popups anchored to a message's buttons or to the point of a right
// click / long press. One popup at a time. Keyboard: arrows move, Home/End jump,
// Enter/Space choose, Escape (or Tab) closes and gives focus back to the opener.

import { h } from '../ui.js';

export const QUICK_REACTIONS = [
  ['👍', 'Thumbs up'], ['❤️', 'Red heart'], ['😂', 'Tears of joy'], ['😮', 'Surprised'],
  ['😢', 'Crying'], ['🙏', 'Folded hands'], ['🎉', 'Party popper'], ['🔥', 'Fire'],
];

const LONG_PRESS_MS = 500;
const MOVE_SLOP_PX = 10;
const MARGIN = 8;

let current = null; // { el, close, owner }

export function closePopup(opts) {
  current?.close(opts);
}

/** Who opened the popup shown now (a string the opener chose), or null. */
export function popupOwner() {
  return current?.owner ?? null;
}

/**
 * Shows `el` near `anchor()` (an element, looked up again on every scroll so a
 * re-rendered row still works) or at `point` {x, y}; `returnFocus()` names the element
 * that gets focus back on Escape. Returns `close`.
 */
function showPopup(el, { anchor, point, returnFocus, onClose, items, owner = null }) {
  closePopup({ focus: false });
  document.body.append(el);
  const place = () => {
    const a = anchor?.();
    if (anchor && !a?.isConnected) return close({ focus: false });
    const w = el.offsetWidth;
    const ht = el.offsetHeight;
    const vw = document.documentElement.clientWidth;
    const vh = window.innerHeight;
    let x;
    let y;
    if (a) {
      const r = a.getBoundingClientRect();
      x = r.right - w; // right-aligned with the opener; flipped to its left edge when short of room
      if (x < MARGIN) x = r.left;
      y = r.bottom + 4;
      if (y + ht > vh - MARGIN) y = r.top - ht - 4;
    } else {
      x = point.x;
      y = point.y;
      if (x + w > vw - MARGIN) x = point.x - w;
      if (y + ht > vh - MARGIN) y = point.y - ht;
    }
    x = Math.max(MARGIN, Math.min(x, vw - w - MARGIN));
    y = Math.max(MARGIN, Math.min(y, vh - ht - MARGIN));
    el.style.setProperty('left', `${Math.round(x)}px`);
    el.style.setProperty('top', `${Math.round(y)}px`);
  };
  // A press on the opener itself is left to its click, which toggles the popup.
  const onOutside = (e) => {
    if (!el.contains(e.target) && !anchor?.()?.contains(e.target)) close({ focus: false });
  };
  const onScroll = () => {
    if (anchor) place();
  };
  const onResize = () => close({ focus: false });
  let closed = false;
  function close({ focus = true } = {}) {
    if (closed) return;
    closed = true;
    if (current?.el === el) current = null;
    document.removeEventListener('pointerdown', onOutside, true);
    document.removeEventListener('scroll', onScroll, true);
    window.removeEventListener('resize', onResize);
    el.remove();
    if (focus) returnFocus?.()?.focus?.({ preventScroll: true });
    onClose?.();
  }
  // roving focus over `items`
  el.addEventListener('keydown', (e) => {
    const list = items();
    const i = list.indexOf(document.activeElement);
    const prev = ['ArrowUp', 'ArrowLeft'];
    const next = ['ArrowDown', 'ArrowRight'];
    let to = null;
    if (next.includes(e.key)) to = list[(i + 1) % list.length];
    else if (prev.includes(e.key)) to = list[(i - 1 + list.length) % list.length];
    else if (e.key === 'Home') to = list[0];
    else if (e.key === 'End') to = list[list.length - 1];
    else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close();
      return;
    } else if (e.key === 'Tab') {
      e.preventDefault();
      close();
      return;
    } else if (e.key.length === 1 && /\S/.test(e.key)) {
      // type-ahead: the next item starting with that letter
      const k = e.key.toLowerCase();
      const order = [...list.slice(i + 1), ...list.slice(0, i + 1)];
      to = order.find((b) => b.textContent.trim().toLowerCase().startsWith(k)) || null;
    }
    if (to) {
      e.preventDefault();
      for (const b of list) b.tabIndex = -1;
      to.tabIndex = 0;
      to.focus();
    }
  });
  document.addEventListener('pointerdown', onOutside, true);
  document.addEventListener('scroll', onScroll, true);
  window.addEventListener('resize', onResize);
  place();
  current = { el, close, owner };
  return close;
}

/**
 * The actions menu. `items`: [{label, icon (svg), run, danger, popup}] — `popup` marks
 * an item that opens another popup (it then keeps the focus return to itself).
 */
export function openMenu({ label, items, anchor, point, returnFocus, onClose, owner }) {
  const menu = h('div', { class: 'msg-menu popup', role: 'menu', 'aria-label': label, 'aria-orientation': 'vertical' });
  const buttons = [];
  let close = null;
  for (const it of items) {
    const b = h('button', {
      type: 'button', role: 'menuitem', tabindex: '-1', class: `menu-item${it.danger ? ' danger' : ''}`,
      'aria-haspopup': it.popup ? 'true' : undefined,
    }, h('span', { class: 'icon', html: it.icon }), h('span', { class: 'menu-label' }, it.label));
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      close({ focus: !it.popup && !it.keepFocus });
      it.run();
    });
    buttons.push(b);
    menu.append(b);
  }
  close = showPopup(menu, { anchor, point, returnFocus, onClose, owner, items: () => buttons });
  if (buttons[0]) {
    buttons[0].tabIndex = 0;
    buttons[0].focus({ preventScroll: true });
  }
  return close;
}

/** The reaction picker: a toolbar of emoji buttons, each named by its emoji. */
export function openReactionPicker({ chosen = new Set(), onPick, anchor, point, returnFocus, onClose, owner }) {
  const bar = h('div', { class: 'reaction-picker popup', role: 'toolbar', 'aria-label': 'Pick a reaction' });
  const buttons = [];
  let close = null;
  for (const [emoji, name] of QUICK_REACTIONS) {
    const b = h('button', {
      type: 'button', class: 'pick-emoji', tabindex: '-1', title: name, 'aria-pressed': String(chosen.has(emoji)),
    }, emoji);
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      close();
      onPick(emoji, !chosen.has(emoji));
    });
    buttons.push(b);
    bar.append(b);
  }
  close = showPopup(bar, { anchor, point, returnFocus, onClose, owner, items: () => buttons });
  buttons[0].tabIndex = 0;
  buttons[0].focus({ preventScroll: true });
  return close;
}

/**
 * Calls `fn(x, y)` when `el` is held (touch or pen) without moving; the click that ends
 * a long press is swallowed so it does not also follow a link or a quote.
 */
export function onLongPress(el, fn) {
  let timer = null;
  let start = null;
  let fired = false;
  const cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  el.addEventListener('pointerdown', (e) => {
    fired = false;
    if (e.pointerType === 'mouse' || e.button > 0) return;
    start = { x: e.clientX, y: e.clientY };
    cancel();
    timer = setTimeout(() => {
      timer = null;
      fired = true;
      fn(start.x, start.y);
    }, LONG_PRESS_MS);
  });
  el.addEventListener('pointermove', (e) => {
    if (timer && start && Math.hypot(e.clientX - start.x, e.clientY - start.y) > MOVE_SLOP_PX) cancel();
  });
  el.addEventListener('pointerup', cancel);
  el.addEventListener('pointercancel', cancel);
  el.addEventListener('click', (e) => {
    if (fired) {
      fired = false;
      e.preventDefault();
      e.stopPropagation();
    }
  }, true);
  // A long touch also fires `contextmenu` on most phones: the press already opened the menu.
  el.addEventListener('contextmenu', (e) => {
    if (fired || timer) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  });
}
