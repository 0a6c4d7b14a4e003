// The views of components and workers: the workers table with its filters
// and search, the components table, and one worker's page (its facts,
// promises, output and oplog).

import {api} from './api.js';
import {h, fill, when, badge} from './dom.js';
import {state, componentName, workerPath, workerHref, promiseHref} from './shared.js';

const STATUSES = ['Running', 'Idle', 'Suspended', 'Interrupted', 'Retrying', 'Failed', 'Exited'];
/** Most workers read per component, and shown at once. */
const MOST = 5000;
const SHOWN = 500;

const key = (id) => `${id.componentId}/${id.workerName}`;

/** Pending promises of a worker, from the shared list. */
function pendingOf(cid, name) {
  return [...state.pending.values()].filter((p) => p.componentId === cid && p.workerName === name && !p.composed).length;
}

/**
 * The workers of a component, a page at a time, at most MOST of them;
 * `more` says whether some were left unread.
 */
async function workersOf(cid) {
  const out = [];
  let cursor = null;
  do {
    const page = await api(`/v1/components/${cid}/workers?count=500${cursor ? `&cursor=${cursor.layer}/${cursor.cursor}` : ''}`);
    out.push(...page.workers);
    cursor = page.cursor;
  } while (cursor && out.length < MOST);
  return {workers: out, more: Boolean(cursor)};
}

function select(id, label, options, value) {
  const el = h('select', {id}, options.map(([v, text]) => h('option', {value: v, text, selected: v === value})));
  return [el, h('div', {}, h('label', {for: id, text: label}), el)];
}

// ---- Workers -------------------------------------------------------------

export async function workersView(params) {
  const [component, componentField] = select('filter-component', 'Component',
    [['', 'All'], ...[...state.components.values()].map((c) => [c.componentId, c.name])], params.get('component') || '');
  const [status, statusField] = select('filter-status', 'Status',
    [['', 'Any'], ...STATUSES.map((s) => [s, s])], params.get('status') || '');
  const search = h('input', {type: 'search', id: 'filter-search', value: params.get('q') || '', placeholder: 'name contains…'});
  const body = h('tbody', {});
  const note = h('p', {class: 'muted', role: 'status'});
  fill(document.getElementById('main'),
    h('h1', {text: 'Workers'}),
    h('div', {class: 'toolbar'}, componentField, statusField,
      h('div', {}, h('label', {for: search.id, text: 'Search'}), search)),
    h('div', {class: 'table-wrap'}, h('table', {},
      h('caption', {class: 'visually-hidden', text: 'Workers'}),
      h('thead', {}, h('tr', {}, ['Worker', 'Component', 'Status', 'Queued', 'Pending promises', 'Last error', 'Created']
        .map((t, i) => h('th', {scope: 'col', class: i >= 5 ? 'hide-narrow' : i >= 3 ? 'num' : null, text: t})))),
      body)),
    note);

  const workers = new Map();
  let unread = false;
  const load = async () => {
    const lists = await Promise.all([...state.components.keys()].map(workersOf));
    workers.clear();
    unread = lists.some((l) => l.more);
    for (const w of lists.flatMap((l) => l.workers)) workers.set(key(w.workerId), w);
  };
  const matches = (w) => (!component.value || w.workerId.componentId === component.value)
    && (!status.value || w.status === status.value)
    && (!search.value.trim() || w.workerId.workerName.toLowerCase().includes(search.value.trim().toLowerCase()));
  const row = (w) => {
    const {componentId: cid, workerName: name} = w.workerId;
    const pending = pendingOf(cid, name);
    return h('tr', {'data-worker': key(w.workerId)},
      h('td', {}, h('a', {href: workerHref(cid, name), text: name})),
      h('td', {text: componentName(cid)}),
      h('td', {}, badge(w.status)),
      h('td', {class: 'num', text: w.pendingInvocationCount}),
      h('td', {class: 'num'}, pending ? h('a', {href: `${workerHref(cid, name)}`, text: pending}) : '0'),
      h('td', {class: 'error-cell hide-narrow', title: w.lastError || null,
        text: w.lastError ? w.lastError.slice(0, 160) : ''}),
      h('td', {class: 'hide-narrow'}, when(w.createdAt)));
  };
  const render = () => {
    const shown = [...workers.values()].filter(matches).sort((a, b) =>
      componentName(a.workerId.componentId).localeCompare(componentName(b.workerId.componentId))
      || a.workerId.workerName.localeCompare(b.workerId.workerName));
    body.replaceChildren(...shown.slice(0, SHOWN).map(row));
    note.textContent = shown.length > SHOWN ? `${shown.length} workers match; the first ${SHOWN} are shown: narrow the search.`
      : `${shown.length} of ${workers.size} workers`;
    if (unread) note.textContent += ` (a component has more than ${MOST.toLocaleString()} workers: only its first ${MOST.toLocaleString()} were read; vow worker list or the API lists them all)`;
  };
  const filtered = () => {
    const q = new URLSearchParams();
    if (component.value) q.set('component', component.value);
    if (status.value) q.set('status', status.value);
    if (search.value.trim()) q.set('q', search.value.trim());
    history.replaceState(null, '', `#/workers${q.size ? `?${q}` : ''}`);
    render();
  };
  component.addEventListener('change', filtered);
  status.addEventListener('change', filtered);
  search.addEventListener('input', filtered);
  await load();
  render();
  return {
    refresh: () => load().then(render),
    worker(w) { workers.set(key(w.workerId), w); render(); },
    workerDeleted(id) { workers.delete(key(id)); render(); },
    promise: render,
    component(c) { component.append(h('option', {value: c.componentId, text: c.name})); },
  };
}

// ---- Components ----------------------------------------------------------

export async function componentsView() {
  const {components} = await api('/v1/components');
  const body = h('tbody', {});
  const render = (list) => body.replaceChildren(...list.map((c) => h('tr', {},
    h('td', {text: c.name}),
    h('td', {class: 'mono hide-narrow', text: c.componentId}),
    h('td', {class: 'num', text: `${(c.size / 1024).toFixed(0)} KiB`}),
    h('td', {}, h('details', {}, h('summary', {text: `${c.exports.length} exports`}),
      h('ul', {}, c.exports.map((e) => h('li', {}, h('code', {text:
        `${e.name}(${e.params.map((p) => `${p.name}: ${p.type}`).join(', ')})${e.results.length ? ` -> ${e.results.join(', ')}` : ''}`})))))),
    h('td', {}, h('a', {href: `#/workers?component=${c.componentId}`, text: 'workers'})))));
  fill(document.getElementById('main'),
    h('h1', {text: 'Components'}),
    h('div', {class: 'table-wrap'}, h('table', {},
      h('caption', {class: 'visually-hidden', text: 'Components'}),
      h('thead', {}, h('tr', {}, ['Name', 'Id', 'Size', 'Exports', ''].map((t, i) =>
        h('th', {scope: 'col', class: ['', 'hide-narrow', 'num', '', ''][i] || null, text: t})))),
      body)),
    components.length ? null : h('p', {class: 'muted', text: 'No component yet: vow component add FILE.wasm'}));
  render(components);
  return {component: () => render([...state.components.values()])};
}

// ---- One worker ----------------------------------------------------------

const OPLOG_PAGE = 50;

export async function workerView(cid, name) {
  const path = workerPath(cid, name);
  const facts = h('dl', {class: 'facts'});
  const title = h('h1', {});
  const promises = h('tbody', {});
  const stdout = h('pre', {id: 'stdout', tabindex: 0, 'aria-label': 'Standard output'});
  const stderr = h('pre', {id: 'stderr', tabindex: 0, 'aria-label': 'Standard error'});
  const dropped = h('p', {class: 'muted'});
  const oplog = h('tbody', {});
  const oplogNote = h('p', {class: 'muted', role: 'status'});
  let from = null;
  let last = 0;
  const nav = (text, onclick) => h('button', {type: 'button', class: 'quiet', text, onclick});

  const showMeta = (w) => {
    fill(title, `${name} `, badge(w.status));
    fill(facts,
      [['Component', h('span', {}, componentName(cid), ' ', h('span', {class: 'muted mono', text: cid}))],
        ['Status', w.status],
        ['Queued invocations', String(w.pendingInvocationCount)],
        ['Last error', w.lastError ? h('pre', {class: 'error', text: w.lastError}) : h('span', {class: 'muted', text: 'none'})],
        ['Created', when(w.createdAt)],
        ['Arguments', w.args.length ? h('code', {text: w.args.join(' ')}) : h('span', {class: 'muted', text: 'none'})],
        ['Environment', Object.keys(w.env).length
          ? h('code', {text: Object.entries(w.env).map(([k, v]) => `${k}=${v}`).join(' ')})
          : h('span', {class: 'muted', text: 'none'})],
        ['Memory', `${(w.totalLinearMemorySize / 1048576).toFixed(1)} MiB`],
      ].map(([t, d]) => [h('dt', {text: t}), h('dd', {}, d)]));
  };
  const loadPromises = async () => {
    const list = (await api(`${path}/promises`)).promises;
    promises.replaceChildren(...list.map((p) => h('tr', {'data-promise': p.promiseId},
      h('td', {}, h('a', {href: promiseHref(p), text: `#${p.oplogIdx}`})),
      h('td', {}, badge(p.status)),
      h('td', {}, when(p.createdAt)),
      h('td', {class: 'hide-narrow'}, when(p.completedAt)),
      h('td', {class: 'hide-narrow'}, p.payloadType ? h('code', {text: p.payloadType}) : ''),
      h('td', {}, p.status === 'pending' && !p.composed ? h('a', {href: promiseHref(p), text: 'Answer'}) : ''))));
    if (!list.length) promises.append(h('tr', {}, h('td', {colspan: 6, class: 'muted', text: 'No promises.'})));
  };
  const loadOutput = async () => {
    const logs = await api(`${path}/logs`);
    stdout.textContent = logs.stdout || '(nothing)';
    stderr.textContent = logs.stderr || '(nothing)';
    dropped.textContent = logs.stdoutDropped || logs.stderrDropped
      ? `Older output dropped: ${logs.stdoutDropped} bytes of stdout, ${logs.stderrDropped} of stderr.` : '';
  };
  const loadOplog = async (start) => {
    last = (await api(`${path}/oplog?count=1`)).lastIndex;
    from = start ?? Math.max(1, last - OPLOG_PAGE + 1);
    const page = await api(`${path}/oplog/raw?from=${from}&count=${OPLOG_PAGE}`);
    oplog.replaceChildren(...page.entries.map((e) => {
      const {kind, ...rest} = e.entry;
      const details = JSON.stringify(rest);
      return h('tr', {},
        h('td', {class: 'num', text: e.index}),
        h('td', {class: 'hide-narrow'}, when(new Date(e.at).toISOString())),
        h('td', {}, h('code', {text: kind})),
        h('td', {class: 'mono', title: details.length > 240 ? details : null,
          text: details === '{}' ? '' : details.slice(0, 240)}));
    }));
    oplogNote.textContent = `Entries ${from}–${Math.min(from + OPLOG_PAGE - 1, last)} of ${last}`;
  };

  showMeta(await api(path));
  fill(document.getElementById('main'),
    h('p', {}, h('a', {href: `#/workers?component=${cid}`, text: '← Workers'})),
    title, facts,
    h('h2', {id: 'promises', text: 'Promises'}),
    h('div', {class: 'table-wrap'}, h('table', {},
      h('thead', {}, h('tr', {}, ['Index', 'Status', 'Created', 'Settled', 'Type', ''].map((t, i) =>
        h('th', {scope: 'col', class: i === 3 || i === 4 ? 'hide-narrow' : null, text: t})))),
      promises)),
    h('h2', {id: 'output', text: 'Output'}),
    h('h3', {text: 'stdout'}), stdout, h('h3', {text: 'stderr'}), stderr, dropped,
    h('h2', {id: 'oplog', text: 'Oplog'}),
    h('div', {class: 'actions'},
      nav('First', () => loadOplog(1)),
      nav('← Older', () => loadOplog(Math.max(1, from - OPLOG_PAGE))),
      nav('Newer →', () => loadOplog(Math.min(from + OPLOG_PAGE, Math.max(1, last - OPLOG_PAGE + 1)))),
      nav('Latest', () => loadOplog())),
    oplogNote,
    h('div', {class: 'table-wrap'}, h('table', {class: 'oplog'},
      h('thead', {}, h('tr', {}, ['#', 'At', 'Kind', 'Details'].map((t, i) =>
        h('th', {scope: 'col', class: ['num', 'hide-narrow', '', ''][i] || null, text: t})))),
      oplog)));
  await Promise.all([loadPromises(), loadOutput(), loadOplog()]);

  // Changes come in bursts (a status, a promise, an oplog entry): one
  // reload per burst.
  let timer = null;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const atEnd = from + OPLOG_PAGE > last;
      Promise.all([loadPromises(), loadOutput(), atEnd ? loadOplog() : null]).catch(() => {});
    }, 150);
  };
  const mine = (id) => id.componentId === cid && id.workerName === name;
  return {
    refresh: () => api(path).then(showMeta).then(soon),
    worker(w) { if (mine(w.workerId)) { showMeta(w); soon(); } },
    workerDeleted(id) { if (mine(id)) fill(title, `${name} `, badge('deleted')); },
    promise(p) { if (p.componentId === cid && p.workerName === name) soon(); },
  };
}
