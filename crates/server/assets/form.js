// The payload form: built from a promise's declared type (Golem's
// AnalysedType JSON in `payloadSchema`), or, without one, a text box whose
// content is sent as text, JSON or bytes. Each control's read() answers
// the value in Vow's plain JSON encoding (docs/rest-api.md, "Values") or
// throws an Invalid naming the control to fix.

import {h, uid} from './dom.js';

/** A value a person entered that is not of the type; `input` to focus. */
export class Invalid extends Error {
  constructor(message, input) {
    super(message);
    this.input = input;
  }
}

const RANGES = {
  U8: [0n, 255n], U16: [0n, 65535n], U32: [0n, 4294967295n], U64: [0n, 18446744073709551615n],
  S8: [-128n, 127n], S16: [-32768n, 32767n], S32: [-2147483648n, 2147483647n],
  S64: [-9223372036854775808n, 9223372036854775807n],
};
const TEXTUAL = new Set([...Object.keys(RANGES), 'F32', 'F64', 'Chr', 'Str']);

/**
 * The form's fields for a promise: `{node, read}` where read() answers the
 * body's payload part, `{value}` or `{data}`.
 */
export function payloadFields(schema) {
  if (!schema) return untyped();
  const control = schema.type === 'Record'
    ? fields(schema.fields.map((f) => [f.name, f.typ]), null)
    : build(schema, 'Value');
  return {node: control.node, read: () => ({value: control.read()})};
}

/** No declared type: text (UTF-8 bytes), JSON (a value) or bytes in hex. */
function untyped() {
  const name = uid('mode');
  const area = uid('payload');
  const modes = [['text', 'Text'], ['json', 'JSON'], ['hex', 'Bytes (hex)']];
  const box = h('textarea', {id: area, rows: 3, spellcheck: 'false'});
  const node = h('div', {},
    h('fieldset', {class: 'modes'}, h('legend', {class: 'visually-hidden', text: 'Send the payload as'}),
      modes.map(([value, text], i) => h('label', {},
        h('input', {type: 'radio', name, value, checked: i === 0}), text))),
    h('div', {class: 'field'}, h('label', {for: area, text: 'Payload'}), box));
  const read = () => {
    const mode = node.querySelector(`input[name="${name}"]:checked`).value;
    if (mode === 'text') return {data: Array.from(new TextEncoder().encode(box.value))};
    if (mode === 'json') {
      try { return {value: JSON.parse(box.value)}; } catch (e) {
        throw new Invalid(`Payload: not JSON (${e.message})`, box);
      }
    }
    const hex = box.value.replace(/0x|[\s,]/gi, '');
    if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Invalid('Payload: expected pairs of hex digits, such as 79 65 73', box);
    return {data: (hex.match(/../g) || []).map((pair) => parseInt(pair, 16))};
  };
  return {node, read};
}

/** Named parts (a record's fields, a tuple's items) in a fieldset, or bare at the top. */
function fields(parts, legend) {
  const controls = parts.map(([name, typ]) => [name, build(typ, name)]);
  const children = controls.map(([, c]) => c.node);
  const node = legend
    ? h('fieldset', {}, h('legend', {text: legend}), children)
    : h('div', {class: 'fields'}, children);
  return {node, controls, read: () => Object.fromEntries(controls.map(([n, c]) => [n, c.read()]))};
}

/** A control for a value of type `typ`, labelled `label`. */
function build(typ, label, optional = false) {
  const kind = typ.type;
  if (kind === 'Bool') return checkbox(label);
  if (kind in RANGES) return integer(kind, label, optional);
  if (kind === 'F32' || kind === 'F64') return float(label, optional);
  if (kind === 'Chr') return char(label, optional);
  if (kind === 'Str') return text(label, optional);
  if (kind === 'Enum') return choice(label, typ.cases.map((name) => ({name})), true);
  if (kind === 'Variant') return choice(label, typ.cases, false);
  if (kind === 'Result') return choice(label, [{name: 'ok', typ: typ.ok}, {name: 'err', typ: typ.err}], false);
  if (kind === 'Option') return option(typ.inner, label);
  if (kind === 'Record') return fields(typ.fields.map((f) => [f.name, f.typ]), label);
  if (kind === 'Tuple') {
    const parts = fields(typ.items.map((t, i) => [String(i), t]), label);
    return {node: parts.node, read: () => parts.controls.map(([, c]) => c.read())};
  }
  if (kind === 'Flags') return flags(typ.names, label);
  if (kind === 'List' && typ.inner.type === 'Str') return lines(label);
  return json(label, typ);
}

function field(label, input, hint) {
  return h('div', {class: 'field'},
    h('label', {for: input.id}, label, hint && h('span', {class: 'hint'}, ` ${hint}`)), input);
}

function checkbox(label) {
  const input = h('input', {type: 'checkbox', id: uid('f')});
  return {
    node: h('div', {class: 'field inline'}, input, h('label', {for: input.id, text: label})),
    read: () => input.checked,
  };
}

function integer(kind, label, optional) {
  const [min, max] = RANGES[kind];
  const wide = kind === 'U64' || kind === 'S64';
  const input = h('input', wide
    ? {id: uid('f'), type: 'text', inputmode: 'numeric', autocomplete: 'off'}
    : {id: uid('f'), type: 'number', step: 1, min: String(min), max: String(max)});
  const read = () => {
    const text = input.value.trim();
    if (!text && optional) return null;
    if (!/^-?\d+$/.test(text)) throw new Invalid(`${label}: enter a whole number`, input);
    const n = BigInt(text);
    if (n < min || n > max) throw new Invalid(`${label}: must be between ${min} and ${max}`, input);
    // u64 and s64 go as decimal text when a JS number cannot hold them.
    return Number.isSafeInteger(Number(n)) ? Number(n) : n.toString();
  };
  return {node: field(label, input, optional ? '(optional)' : kind.toLowerCase()), read};
}

function float(label, optional) {
  const input = h('input', {id: uid('f'), type: 'text', inputmode: 'decimal', autocomplete: 'off'});
  const read = () => {
    const text = input.value.trim();
    if (!text && optional) return null;
    if (['NaN', 'Infinity', '-Infinity'].includes(text)) return text;
    const n = Number(text);
    if (!text || !Number.isFinite(n)) throw new Invalid(`${label}: enter a number`, input);
    return n;
  };
  return {node: field(label, input, optional ? '(optional)' : 'number'), read};
}

function char(label, optional) {
  const input = h('input', {id: uid('f'), type: 'text', size: 4, autocomplete: 'off'});
  const read = () => {
    if (!input.value && optional) return null;
    if ([...input.value].length !== 1) throw new Invalid(`${label}: enter one character`, input);
    return input.value;
  };
  return {node: field(label, input, optional ? '(optional)' : 'one character'), read};
}

function text(label, optional) {
  const input = h('input', {id: uid('f'), type: 'text', autocomplete: 'off'});
  return {
    node: field(label, input, optional ? '(optional: left empty, none)' : null),
    read: () => (optional && input.value === '' ? null : input.value),
  };
}

/** Cases in a select; the chosen case's payload, if it has one, below it. */
function choice(label, cases, bare) {
  const select = h('select', {id: uid('f')}, cases.map((c) => h('option', {value: c.name, text: c.name})));
  const below = h('div', {class: 'case'});
  let payload = null;
  const show = () => {
    const chosen = cases.find((c) => c.name === select.value);
    payload = chosen && chosen.typ ? build(chosen.typ, `${label}: ${chosen.name}`) : null;
    below.replaceChildren(...(payload ? [payload.node] : []));
  };
  select.addEventListener('change', show);
  show();
  return {
    node: h('div', {}, field(label, select), below),
    read: () => {
      if (bare) return select.value;
      return payload ? {[select.value]: payload.read()} : select.value;
    },
  };
}

function option(inner, label) {
  if (TEXTUAL.has(inner.type)) return build(inner, label, true);
  const give = h('input', {type: 'checkbox', id: uid('f')});
  const control = build(inner, label);
  const body = h('div', {hidden: true}, control.node);
  give.addEventListener('change', () => { body.hidden = !give.checked; });
  return {
    node: h('div', {}, h('div', {class: 'field inline'}, give,
      h('label', {for: give.id}, `Give ${label}`, h('span', {class: 'hint', text: ' (optional)'}))), body),
    read: () => (give.checked ? control.read() : null),
  };
}

function flags(names, label) {
  const boxes = names.map((name) => [name, h('input', {type: 'checkbox', id: uid('f')})]);
  return {
    node: h('fieldset', {}, h('legend', {text: label}),
      boxes.map(([name, box]) => h('div', {class: 'field inline'}, box, h('label', {for: box.id, text: name})))),
    read: () => boxes.filter(([, box]) => box.checked).map(([name]) => name),
  };
}

function lines(label) {
  const area = h('textarea', {id: uid('f'), rows: 3});
  return {
    node: field(label, area, '(one per line)'),
    read: () => area.value.split('\n').map((l) => l.trim()).filter((l) => l !== ''),
  };
}

function json(label, typ) {
  const area = h('textarea', {id: uid('f'), rows: 3, spellcheck: 'false'});
  const read = () => {
    try { return JSON.parse(area.value); } catch (e) {
      throw new Invalid(`${label}: not JSON (${e.message})`, area);
    }
  };
  return {node: field(label, area, `(JSON, a ${typ.type.toLowerCase()})`), read};
}
