// The JSON API as the page uses it: the token typed once per tab, errors
// as messages, and the live change stream of GET /v1/events.

const KEY = 'vow.apiToken';

/** A non-2xx answer: its status and its JSON body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(message(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** The message of an error body, in any of the API's three shapes. */
export function message(body) {
  if (!body) return '';
  if (typeof body === 'string') return body;
  if (Array.isArray(body.errors)) return body.errors.join('; ');
  if (body.golemError) return body.golemError.details || body.golemError.type;
  return body.error || '';
}

export function token() {
  return sessionStorage.getItem(KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// Asks the person for a token; set by the page. Requests that meet a 401
// at the same time share one question.
let ask = null;
let asking = null;

/** `fn(reason)` resolves once a new token is stored. */
export function onUnauthorized(fn) {
  ask = fn;
}

function askToken(reason) {
  if (!ask) return Promise.reject(new ApiError(401, reason));
  asking ??= ask(reason).finally(() => { asking = null; });
  return asking;
}

function headers(accept, auth) {
  const out = {Accept: accept};
  if (auth && token()) out.Authorization = `Bearer ${token()}`;
  return out;
}

/**
 * Calls the API: `api('/v1/promises?status=pending')`,
 * `api(path, {method: 'POST', body})`. `auth: false` sends no token (the
 * completion link's routes). Answers the parsed JSON; throws ApiError.
 */
export async function api(path, {method = 'GET', body, auth = true} = {}) {
  for (;;) {
    const init = {method, headers: headers('application/json', auth), cache: 'no-store'};
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = text; }
    if (response.status === 401 && auth) {
      await askToken(message(json));
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, json);
    return json;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows GET /v1/events: `onEvent(name, data)` for each server-sent event,
 * `onState(live)` when the stream comes up (its `hello`) or goes down.
 * Reconnects with a growing pause. EventSource cannot send the
 * Authorization header, so the stream is read with fetch.
 */
export function listen(onEvent, onState) {
  const abort = new AbortController();
  (async () => {
    let pause = 500;
    while (!abort.signal.aborted) {
      try {
        const response = await fetch('/v1/events', {
          headers: headers('text/event-stream', true), signal: abort.signal, cache: 'no-store',
        });
        if (response.status === 401) {
          onState(false);
          await askToken(message(await response.json().catch(() => null)));
          continue;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = parse(block);
            if (!event) continue;
            if (event.name === 'hello') { pause = 500; onState(true); }
            onEvent(event.name, event.data);
          }
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        console.debug('event stream', error);
      }
      onState(false);
      await sleep(pause);
      pause = Math.min(pause * 2, 8000);
    }
  })();
  return () => abort.abort();
}

/** One event block: its name and parsed data; null for a comment. */
function parse(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  try { return {name, data: JSON.parse(data.join('\n'))}; } catch { return null; }
}
