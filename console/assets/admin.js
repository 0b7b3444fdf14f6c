// The admin pages (role admin): one tab, "Administration", with a section per kind of
// thing (organisations, users, agents and join tokens, maintenance windows, webhooks),
// each in its own admin-*.js module registering here with `section`. This module holds
// what they share: the section menu, forms built from a field list, tables, the box that
// shows a password, token or secret once, and the confirmation asked before anything
// destructive. The relay decides who may do what; an organisation's admin simply gets
// their own organisation's things.
import { call } from './api.js';
import { $, say, fail, cell } from './common.js';
import { register } from './pages.js';

const sections = [];
let me = null;
let shown = null;

/// A section: { name, title, order, intro(me), render(me, body) }.
export function section(s) {
  sections.push(s);
  sections.sort((a, b) => a.order - b.order);
}

export const isOperator = (who) => who && who.org === 'operator';

/// GET an admin list.
export const list = (what) => call('GET', `/api/v1/admin/${what}`);

/// POST an admin change; says its message, shows what comes once, and redraws.
export async function change(path, body, once) {
  try {
    const r = await call('POST', `/api/v1/admin/${path}`, body || {});
    say(r.message, true);
    if (once && r[once.key]) showOnce(once.title, r[once.key], once.note);
    await redraw();
    return r;
  } catch (e) { fail(e); return null; }
}

/// Shows a value that exists nowhere else (a new password, a join token, a secret).
export function showOnce(title, value, note) {
  $('admin-once-title').textContent = title;
  $('admin-once-value').textContent = value;
  $('admin-once-note').textContent = note || '';
  $('admin-once').hidden = false;
  $('admin-once').scrollIntoView({ block: 'nearest' });
}
$('admin-once-done').addEventListener('click', () => {
  $('admin-once').hidden = true;
  $('admin-once-value').textContent = '';
});

/// A button that asks before it acts: a click shows the question with a confirm and a
/// cancel button in its place.
export function guarded(label, question, yes, act, cls = 'secondary') {
  const wrap = document.createElement('span');
  wrap.className = 'guarded';
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `${cls} ask`;
  b.textContent = label;
  const box = document.createElement('span');
  box.className = 'confirm';
  box.hidden = true;
  const q = document.createElement('span');
  q.textContent = question;
  const ok = document.createElement('button');
  ok.type = 'button';
  // Named after the action too, so that a row with several guarded buttons tells them apart.
  ok.className = `secondary confirm-yes confirm-${cls.split(' ').pop()}`;
  ok.textContent = yes;
  const no = document.createElement('button');
  no.type = 'button';
  no.className = 'plain confirm-no';
  no.textContent = 'Cancel';
  box.append(q, ok, no);
  b.addEventListener('click', () => { b.hidden = true; box.hidden = false; box.scrollIntoView({ block: 'nearest' }); });
  no.addEventListener('click', () => { b.hidden = false; box.hidden = true; });
  ok.addEventListener('click', () => { ok.disabled = true; act(); });
  wrap.append(b, box);
  return wrap;
}

/// A plain button.
export function button(label, act, cls = 'plain') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = label;
  b.addEventListener('click', act);
  return b;
}

/// A form from fields { id, label, type: text|number|select|url, options: [[value, text]],
/// value, hint, optional }; `submit(values)` gets the trimmed values by id.
export function form(id, title, fields, label, submit) {
  const f = document.createElement('form');
  f.id = id;
  f.className = 'admin-form';
  const h = document.createElement('h2');
  h.textContent = title;
  f.append(h);
  for (const d of fields) {
    const l = document.createElement('label');
    l.textContent = d.label + (d.optional ? ' (optional)' : '');
    let input;
    if (d.type === 'select') {
      input = document.createElement('select');
      for (const [v, t] of d.options) {
        const o = document.createElement('option');
        o.value = v;
        o.textContent = t;
        input.append(o);
      }
    } else {
      input = document.createElement('input');
      input.type = d.type || 'text';
      input.autocomplete = 'off';
      if (!d.optional) input.required = true;
      if (d.type === 'number') input.min = '1';
    }
    input.id = `${id}-${d.id}`;
    input.name = d.id;
    if (d.value != null) input.value = d.value;
    l.append(input);
    if (d.hint) {
      const s = document.createElement('span');
      s.className = 'small hint';
      s.textContent = d.hint;
      l.append(s);
    }
    f.append(l);
  }
  const b = document.createElement('button');
  b.type = 'submit';
  b.id = `${id}-submit`;
  b.textContent = label;
  f.append(b);
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    say('');
    const values = {};
    for (const d of fields) values[d.id] = f.elements[d.id].value.trim();
    submit(values);
  });
  return f;
}

/// A table with headers; `row(tr, item)` fills each row.
export function table(id, headers, items, row, empty) {
  if (items.length === 0) {
    const p = document.createElement('p');
    p.className = 'empty';
    p.id = `${id}-none`;
    p.textContent = empty;
    return p;
  }
  const t = document.createElement('table');
  t.id = id;
  t.className = 'history admin-table';
  const head = document.createElement('tr');
  for (const h of headers) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const thead = document.createElement('thead');
  thead.append(head);
  const tbody = document.createElement('tbody');
  for (const item of items) {
    const tr = document.createElement('tr');
    row(tr, item);
    tbody.append(tr);
  }
  t.append(thead, tbody);
  return t;
}

export { cell };

/// Options of a select of organisations the admin may use.
export async function orgOptions() {
  const orgs = await list('orgs');
  return orgs.map((o) => [o.name, o.name]);
}

function menu() {
  const nav = $('admin-nav');
  nav.replaceChildren(...sections.map((s) => {
    const a = document.createElement('a');
    a.href = `#admin/${s.name}`;
    a.id = `admin-tab-${s.name}`;
    a.dataset.section = s.name;
    a.textContent = s.title;
    return a;
  }));
}

export async function redraw() {
  const s = sections.find((x) => x.name === shown) || sections[0];
  for (const a of $('admin-nav').children) a.classList.toggle('current', a.dataset.section === s.name);
  const body = document.createElement('div');
  body.id = `admin-${s.name}`;
  try {
    await s.render(me, body);
    $('admin-body').replaceChildren(body);
  } catch (e) { fail(e); }
}

register({
  name: 'admin', el: 'admin', tab: 'Administration', hash: '#admin', prefix: '#admin/', order: 40,
  allowed: (who) => who.role === 'admin',
  start: (who) => { me = who; menu(); },
  stop: () => { me = null; $('admin-body').replaceChildren(); $('admin-once').hidden = true; },
  enter: (who, arg) => { me = who; shown = arg || (sections[0] && sections[0].name); redraw(); },
});
