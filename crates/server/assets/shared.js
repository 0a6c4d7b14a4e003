// What the views of the main page share: component names, the pending
// promises, the current view, paths, and promise cards wired to the API.

import {api} from './api.js';
import {h} from './dom.js';
import {promiseCard} from './card.js';

/** What every view shares: component names, pending promises, the view. */
export const state = {
  components: new Map(),
  pending: new Map(),
  view: null,
};

/** A worker's path in the API. */
export const workerPath = (cid, name) => `/v1/components/${cid}/workers/${encodeURIComponent(name)}`;
/** A worker's page. */
export const workerHref = (cid, name) => `#/worker/${cid}/${encodeURIComponent(name)}`;
/** A promise's page. */
export const promiseHref = (p) => `${workerHref(p.componentId, p.workerName)}/promise/${p.oplogIdx}`;
/** A component's name, or its id while unknown. */
export const componentName = (cid) => state.components.get(cid)?.name || cid;

/** The worker line of a promise card: a link to the worker's page. */
function workerLine(p) {
  return [h('a', {href: workerHref(p.componentId, p.workerName), text: p.workerName}),
    h('span', {class: 'muted', text: ` in ${componentName(p.componentId)}`})];
}

/** A promise card with the REST routes behind its form. */
export function card(p, settled) {
  const path = workerPath(p.componentId, p.workerName);
  return promiseCard(p, {
    title: h('a', {href: promiseHref(p), class: 'mono', text: p.promiseId}),
    worker: workerLine(p),
    complete: (body) => api(`${path}/complete`, {method: 'POST', body: {oplogIdx: p.oplogIdx, ...body}}),
    reject: (body) => api(`${path}/reject`, {method: 'POST', body: {oplogIdx: p.oplogIdx, ...body}}),
    current: () => api(`${path}/promises/${p.oplogIdx}`),
    settled,
  });
}
