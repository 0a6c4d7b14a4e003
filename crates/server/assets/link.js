// The page a completion link opens: that one promise and its form, with
// the link's own token as the only credential (no API token, no other data).

import {api} from './api.js';
import {h, fill, when} from './dom.js';
import {promiseCard} from './card.js';

/** Shows the promise of link `token` in `main`. */
export async function linkPage(main, token) {
  const path = `/v1/links/${token}`;
  let view;
  try {
    view = await api(path, {auth: false});
  } catch (e) {
    fill(main, h('h1', {text: 'This link does not work'}), h('p', {class: 'error', text: e.message}));
    return;
  }
  const send = (action) => (body) => api(`${path}/${action}`, {method: 'POST', body, auth: false});
  const card = promiseCard(view, {
    title: h('span', {class: 'mono', text: view.promiseId}),
    worker: [view.workerName, h('span', {class: 'muted', text: ` (component ${view.componentId})`})],
    facts: [['Link valid until', when(view.linkExpiresAt)]],
    complete: view.action === 'reject' ? null : send('complete'),
    reject: view.action === 'complete' ? null : send('reject'),
    current: () => api(path, {auth: false}),
  });
  const heading = view.status === 'pending' ? 'A promise waits for your answer' : 'This promise is settled';
  fill(main, h('h1', {text: heading}), h('ul', {class: 'cards'}, card));
  main.focus({preventScroll: true});
}
