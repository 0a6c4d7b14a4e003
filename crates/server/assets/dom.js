// Building the page's elements. Everything that comes from the server is
// set as text, never parsed as HTML: worker names, output and payloads are
// whatever a guest or a caller wrote.

/** An element: h('a', {href: '#/', class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh id for a label's `for`. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** "12 s ago", "3 min ago", ... for an RFC 3339 time. */
export function ago(iso) {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return iso;
  const future = s < 0;
  const a = Math.abs(s);
  const text = a < 60 ? `${a} s` : a < 3600 ? `${Math.floor(a / 60)} min`
    : a < 86400 ? `${Math.floor(a / 3600)} h` : `${Math.floor(a / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

/** A <time> that says how long ago `iso` was, kept current by tick(). */
export function when(iso) {
  if (!iso) return h('span', {class: 'muted', text: '—'});
  return h('time', {datetime: iso, title: new Date(iso).toLocaleString(), 'data-ago': ''}, ago(iso));
}

/** Brings every relative time on the page up to date. */
export function tick() {
  for (const el of document.querySelectorAll('time[data-ago]')) el.textContent = ago(el.dateTime);
}

/** A status badge. */
export function badge(status) {
  return h('span', {class: `badge ${status}`, text: status});
}

/** Bytes as people read them: JSON pretty-printed, text, or hex. */
export function showBytes(bytes) {
  const array = Uint8Array.from(bytes || []);
  try {
    const text = new TextDecoder('utf-8', {fatal: true}).decode(array);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
  } catch {
    return Array.from(array, (b) => b.toString(16).padStart(2, '0')).join(' ');
  }
}

/** Says `text` to screen readers. */
export function announce(text) {
  const el = document.getElementById('announce');
  if (el) el.textContent = text;
}
