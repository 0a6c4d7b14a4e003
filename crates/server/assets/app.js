// Vow's page. On `/`: pending promises, workers and components, kept
// current by GET /v1/events; views are chosen by the URL's fragment
// (#/, #/workers, #/components, #/worker/CID/NAME, #/promise/CID/NAME/IDX).
// On `/v1/links/TOKEN`: that one promise and its form, nothing else.

import {api, listen, token, setToken, onUnauthorized, ApiError, message} from './api.js';
import {h, fill, tick, announce} from './dom.js';
import {showSettled, updatePending} from './card.js';
import {linkPage} from './link.js';
import {state, card, componentName, workerPath, workerHref} from './shared.js';
import {workersView, componentsView, workerView} from './views.js';

const main = document.getElementById('main');

function updateCount() {
  const n = [...state.pending.values()].filter((p) => !p.composed).length;
  const count = document.getElementById('pending-count');
  count.textContent = n ? String(n) : '';
  count.setAttribute('aria-label', `${n} pending promises`);
}

// ---- Pending promises ----------------------------------------------------

function pendingView() {
  const search = h('input', {type: 'search', id: 'pending-search', placeholder: 'worker, component, type…'});
  const composed = h('input', {type: 'checkbox', id: 'pending-composed'});
  const list = h('ul', {class: 'cards', id: 'pending', 'aria-label': 'Pending promises'});
  const empty = h('p', {class: 'muted', id: 'pending-empty', text: 'No promise is waiting.'});
  const settled = h('ul', {class: 'cards', id: 'settled', 'aria-label': 'Settled while this page was open'});
  fill(main,
    h('h1', {text: 'Pending promises'}),
    h('div', {class: 'toolbar'},
      h('div', {}, h('label', {for: search.id, text: 'Search'}), search),
      h('div', {class: 'field inline'}, composed, h('label', {for: composed.id, text: 'Include promises the runtime settles'}))),
    list, empty,
    h('h2', {text: 'Settled while this page was open'}), settled);

  const visible = (p) => {
    if (p.composed && !composed.checked) return false;
    const q = search.value.trim().toLowerCase();
    if (!q) return true;
    return [p.promiseId, p.workerName, componentName(p.componentId), p.payloadType || '']
      .some((s) => s.toLowerCase().includes(q));
  };
  const moveToSettled = (el) => {
    if (el.parentElement === list) {
      settled.prepend(el);
      empty.hidden = list.children.length > 0;
    }
  };
  // Changes the list in place: a card that stays is not moved, so the
  // field someone is typing in keeps its focus; a card whose answer this
  // page is still sending stays until the answer is drawn.
  const render = () => {
    const shown = [...state.pending.values()].filter(visible)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.promiseId.localeCompare(b.promiseId));
    const wanted = new Set(shown.map((p) => p.promiseId));
    const keep = new Map();
    for (const el of [...list.children]) {
      if (wanted.has(el.dataset.promise)) keep.set(el.dataset.promise, el);
      else if (!el.dataset.busy) el.remove();
    }
    let at = list.firstElementChild;
    for (const p of shown) {
      while (at && at.dataset.busy && !wanted.has(at.dataset.promise)) at = at.nextElementSibling;
      const el = keep.get(p.promiseId) || card(p, moveToSettled);
      if (el === at) at = at.nextElementSibling;
      else list.insertBefore(el, at);
    }
    empty.hidden = list.children.length > 0;
  };
  search.addEventListener('input', render);
  composed.addEventListener('change', render);
  render();
  return {
    refresh: render,
    promise(p) {
      const el = [...list.children].find((c) => c.dataset.promise === p.promiseId);
      if (p.status === 'pending') {
        if (el) updatePending(el, p);
        else render();
      } else if (el && !el.dataset.busy) {
        // A settlement this page is sending itself is shown by its answer.
        showSettled(el, p, false);
        moveToSettled(el);
      }
    },
    promiseDeleted(id) {
      [...list.children].find((c) => c.dataset.promise === id)?.remove();
      empty.hidden = list.children.length > 0;
    },
  };
}

// ---- One promise ---------------------------------------------------------

async function promiseView(cid, name, idx) {
  const p = await api(`${workerPath(cid, name)}/promises/${idx}`);
  const list = h('ul', {class: 'cards'}, card(p));
  const linkOut = h('div', {});
  const makeLink = h('button', {type: 'button', text: 'Make a completion link'});
  makeLink.addEventListener('click', async () => {
    let link;
    try {
      link = await api(`${workerPath(cid, name)}/promises/${idx}/link`, {method: 'POST'});
    } catch (e) {
      fill(linkOut, h('p', {class: 'error', role: 'alert', text: `Cannot make a link: ${message(e.body) || e.message}`}));
      return;
    }
    const url = new URL(link.url, location.href).href;
    const field = h('input', {type: 'text', id: 'link-url', readonly: true, value: url, size: 60});
    fill(linkOut, h('div', {class: 'field'},
      h('label', {for: field.id}, 'Completion link', h('span', {class: 'hint', text: ` (until ${new Date(link.expiresAt).toLocaleString()})`})), field));
    field.select();
  });
  fill(main,
    h('p', {}, h('a', {href: workerHref(cid, name)}, `← worker ${name}`)),
    h('h1', {}, 'Promise ', h('span', {class: 'mono', text: p.promiseId})),
    list,
    p.status === 'pending' && !p.composed && h('div', {class: 'actions'}, makeLink),
    linkOut);
  return {
    promise(q) {
      const el = list.firstElementChild;
      if (q.promiseId !== p.promiseId || !el) return;
      if (q.status === 'pending') updatePending(el, q);
      else if (!el.dataset.busy) showSettled(el, q, false);
    },
  };
}

// ---- Routing and the live stream -----------------------------------------

const routes = [
  [/^#?\/?$/, () => pendingView(), 'pending'],
  [/^#\/workers(\?.*)?$/, (m) => workersView(new URLSearchParams((m[1] || '').slice(1))), 'workers'],
  [/^#\/components$/, () => componentsView(), 'components'],
  [/^#\/worker\/([^/]+)\/([^/]+)\/promise\/(\d+)$/, (m) => promiseView(m[1], decodeURIComponent(m[2]), m[3]), 'workers'],
  [/^#\/worker\/([^/]+)\/([^/]+)$/, (m) => workerView(m[1], decodeURIComponent(m[2])), 'workers'],
];

async function route() {
  const hash = location.hash || '#/';
  const found = routes.map(([re, view, nav]) => [hash.match(re), view, nav]).find(([m]) => m);
  for (const a of document.querySelectorAll('#nav a')) {
    if (found && a.dataset.view === found[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  state.view = null;
  if (!found) {
    fill(main, h('h1', {text: 'Not found'}), h('p', {}, h('a', {href: '#/', text: 'Pending promises'})));
    return;
  }
  try {
    state.view = await found[1](found[0]);
  } catch (e) {
    fill(main, h('h1', {text: 'Cannot show this'}), h('p', {class: 'error', text: e.message}));
  }
  // A new view starts at its top, as a new page would.
  window.scrollTo(0, 0);
  main.focus({preventScroll: true});
}

/** Reloads what the views read from, after (re)connecting. */
async function reload() {
  const [components, pending] = await Promise.all([
    api('/v1/components'), api('/v1/promises?status=pending'),
  ]);
  state.components = new Map(components.components.map((c) => [c.componentId, c]));
  state.pending = new Map(pending.promises.map((p) => [p.promiseId, p]));
  updateCount();
}

// Events that arrive while the lists are read again wait for them: applied
// before, a settlement would be undone by a list read a moment earlier.
let held = null;

function onEvent(name, data) {
  if (name === 'hello' || name === 'resync') {
    if (held) return;
    held = [];
    const done = () => {
      const waiting = held;
      held = null;
      state.view?.refresh?.();
      for (const [n, d] of waiting) onEvent(n, d);
    };
    reload().then(done, done);
    return;
  }
  if (held) {
    held.push([name, data]);
    return;
  }
  const view = state.view;
  if (name === 'component') state.components.set(data.componentId, data);
  if (name === 'promise') {
    if (data.status === 'pending') state.pending.set(data.promiseId, data);
    else state.pending.delete(data.promiseId);
    updateCount();
    view?.promise?.(data);
    if (data.status !== 'pending' && !view?.promise) announce(`Promise ${data.promiseId} ${data.status}`);
  }
  if (name === 'promise-deleted') {
    state.pending.delete(data.promiseId);
    updateCount();
    view?.promiseDeleted?.(data.promiseId);
  }
  if (name === 'worker') view?.worker?.(data);
  if (name === 'worker-deleted') view?.workerDeleted?.(data.workerId);
  if (name === 'component') view?.component?.(data);
}

function setLive(live) {
  const el = document.getElementById('live');
  el.className = `live ${live ? 'on' : 'off'}`;
  el.textContent = live ? 'live' : 'reconnecting…';
}

/** Asks for the API token in the dialog; resolves once one is typed. */
function askForToken(reason) {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-error').textContent = token() ? reason || 'wrong API token' : '';
  input.value = '';
  return new Promise((resolve) => {
    const form = document.getElementById('token-form');
    const done = (event) => {
      event.preventDefault();
      if (!input.value) return;
      setToken(input.value);
      form.removeEventListener('submit', done);
      dialog.close();
      document.getElementById('forget-token').hidden = false;
      resolve();
    };
    form.addEventListener('submit', done);
    // Escape would leave the page without data: the dialog stays.
    dialog.oncancel = (e) => e.preventDefault();
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

async function start() {
  if (location.pathname.startsWith('/v1/links/')) {
    await linkPage(main, location.pathname.slice('/v1/links/'.length));
    setInterval(tick, 10000);
    return;
  }
  onUnauthorized(askForToken);
  const forget = document.getElementById('forget-token');
  forget.hidden = !token();
  forget.addEventListener('click', () => { setToken(''); location.reload(); });
  try {
    await reload();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  window.addEventListener('hashchange', route);
  await route();
  listen(onEvent, setLive);
  setInterval(tick, 10000);
}

start();
