// One promise as a card: who waits on it and since when, its declared
// type, and while it is pending the form that completes or rejects it. The
// answer (ours, or someone else's settlement) replaces the form in place.

import {h, uid, when, badge, showBytes, announce} from './dom.js';
import {payloadFields, Invalid} from './form.js';
import {message} from './api.js';

/**
 * The card of promise `p` (a PromiseBody of the API). `how`:
 * - worker: the node that names its worker (a link on the main page);
 * - title: the heading's content;
 * - facts: more [term, node] pairs;
 * - complete(body), reject(body): send the settlement, answer true if this
 *   request settled it, false if it was already settled (both may be
 *   absent: then no form);
 * - current(): the promise as it is now, to say who was first;
 * - settled(card, p): called once the promise settled, whoever settled it.
 */
export function promiseCard(p, how) {
  const answer = h('div', {class: 'answer', role: 'status', tabindex: '-1'});
  const error = h('p', {class: 'error', role: 'alert'});
  const facts = h('dl', {class: 'facts'},
    fact('Worker', how.worker),
    fact('Waiting since', when(p.createdAt)),
    p.deadline && fact('Times out', when(p.deadline)),
    fact('Awaited', awaited(p)),
    fact('Type', p.payloadType ? h('code', {text: p.payloadType}) : h('span', {class: 'muted', text: 'none declared: any bytes'})),
    (how.facts || []).map(([term, node]) => fact(term, node)));
  const card = h('li', {class: 'card', 'data-promise': p.promiseId, 'data-shown-at': Date.now()},
    h('header', {}, h('h3', {}, how.title), badge(p.status)), facts);
  card.vow = {answer, how, facts};
  if (p.status !== 'pending') {
    showSettled(card, p, false);
  } else if (p.composed) {
    card.append(h('p', {class: 'muted', text: 'Settled by the runtime (when, then, all or any): no one completes it by hand.'}));
  } else if (how.complete || how.reject) {
    card.append(form(card, p, how, error));
  }
  card.append(error, answer);
  return card;
}

function fact(term, node) {
  return [h('dt', {text: term}), h('dd', {'data-fact': term}, node)];
}

const awaited = (p) => (p.awaited ? 'yes: the worker is parked on it' : 'not yet');

/** Brings a pending card up to date with `p` (its worker parked on it since). */
export function updatePending(card, p) {
  const dd = card.querySelector('dd[data-fact="Awaited"]');
  if (dd) dd.textContent = awaited(p);
}

/**
 * The forms: the payload's fields with Complete, and Reject behind a
 * disclosure. Two forms, so that Enter in a field submits the form it is
 * in: Enter in the reason rejects, never completes.
 */
function form(card, p, how, error) {
  const payload = how.complete ? payloadFields(p.payloadSchema) : null;
  const reason = h('input', {type: 'text', id: uid('reason'), autocomplete: 'off'});
  const rejectButton = h('button', {type: 'submit', class: 'danger', text: 'Reject'});
  const completeButton = h('button', {type: 'submit', class: 'primary', text: 'Complete'});
  const completeForm = payload && h('form', {class: 'complete', novalidate: true, 'aria-label': `Complete promise ${p.promiseId}`},
    payload.node,
    h('div', {class: 'actions'}, completeButton));
  const rejectForm = how.reject && h('form', {class: 'reject', novalidate: true, 'aria-label': `Reject promise ${p.promiseId}`},
    h('div', {class: 'field'}, h('label', {for: reason.id, text: 'Reason'}), reason),
    h('div', {class: 'actions'}, rejectButton));
  const el = h('div', {class: 'promise-form'},
    completeForm,
    rejectForm && (payload
      ? h('details', {class: 'reject'}, h('summary', {text: 'Reject instead…'}), rejectForm)
      : rejectForm));
  const buttons = [completeButton, rejectButton];

  const send = async (action, body) => {
    error.textContent = '';
    buttons.forEach((b) => { b.disabled = true; });
    card.dataset.busy = '1';
    try {
      const first = await action(body);
      card.dataset.answeredAt = Date.now();
      if (first) {
        showSettled(card, {...p, status: body.error === undefined ? 'completed' : 'rejected',
          completedAt: new Date().toISOString(), error: body.error && {message: body.error}}, true, body);
      } else {
        const now = how.current ? await how.current().catch(() => null) : null;
        showSettled(card, now && now.status !== 'pending' ? now : {...p, status: 'settled'}, false, null, true);
      }
    } catch (e) {
      error.textContent = message(e.body) || e.message;
      buttons.forEach((b) => { b.disabled = false; });
    } finally {
      delete card.dataset.busy;
    }
  };
  completeForm?.addEventListener('submit', (event) => {
    event.preventDefault();
    for (const bad of completeForm.querySelectorAll('[aria-invalid]')) bad.removeAttribute('aria-invalid');
    let body;
    try {
      body = payload.read();
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      error.textContent = e.message;
      e.input.setAttribute('aria-invalid', 'true');
      e.input.focus();
      return;
    }
    send(how.complete, body);
  });
  rejectForm?.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      error.textContent = 'Reason: say why the promise is rejected';
      reason.setAttribute('aria-invalid', 'true');
      reason.focus();
      return;
    }
    reason.removeAttribute('aria-invalid');
    send(how.reject, {error: reason.value.trim()});
  });
  return el;
}

/**
 * Marks the card settled with `p`'s settlement, in place of its form.
 * `mine`: this page settled it (with `body`); `late`: this page tried and
 * someone else had been first.
 */
export function showSettled(card, p, mine, body, late) {
  if (card.classList.contains('settled')) return;
  const {answer} = card.vow;
  card.classList.add('settled');
  if (p.status === 'rejected' || p.status === 'timed-out') card.classList.add('rejected');
  card.dataset.settledAt = Date.now();
  card.dataset.status = p.status;
  card.querySelector('header .badge')?.replaceWith(badge(p.status));
  card.querySelector('.promise-form')?.remove();
  answer.classList.add(card.classList.contains('rejected') ? 'bad' : 'ok');
  const by = late ? 'Already settled by someone else' : null;
  const at = p.completedAt ? [' ', when(p.completedAt)] : [];
  let lines;
  if (mine && body && body.error === undefined) {
    lines = [h('strong', {text: 'Completed.'}), ' The worker gets:', h('pre', {}, sent(body))];
  } else if (mine) {
    lines = [h('strong', {text: 'Rejected.'}), ` Reason: ${body.error}`];
  } else if (p.status === 'completed') {
    lines = [h('strong', {text: late ? 'Already completed by someone else' : 'Completed'}), at,
      p.data ? h('pre', {}, showBytes(p.data)) : null];
  } else if (p.status === 'rejected') {
    lines = [h('strong', {text: late ? 'Already rejected by someone else' : 'Rejected'}), at,
      p.error ? `: ${p.error.message}` : ''];
  } else if (p.status === 'timed-out') {
    lines = [h('strong', {text: 'Timed out'}), at];
  } else {
    lines = [h('strong', {text: by || `Settled (${p.status})`})];
  }
  answer.replaceChildren(...lines.flat().filter((x) => x !== null && x !== undefined));
  announce(`Promise ${p.promiseId}: ${answer.textContent}`);
  if (mine || late) answer.focus();
  card.vow.how.settled?.(card, p);
}

/** What a completion sent, as people read it. */
function sent(body) {
  if ('value' in body) return JSON.stringify(body.value, null, 2);
  return showBytes(body.data);
}
