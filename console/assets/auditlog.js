// The audit log page (auditors and admins; the relay decides which events each reads):
// the chain's verification at the top, then the events newest first with the sessions
// page's filters and pages. A session named in an event links to its session page.
import { call } from './api.js';
import { $, say, fail, timeText, cell } from './common.js';
import { register } from './pages.js';

let logPage = 1;
let actionsListed = false;

function filterQuery(page) {
  const q = new URLSearchParams();
  for (const el of $('al-filters').elements) {
    if (!el.name || !el.value.trim()) continue;
    // Times are typed in the browser's zone and sent as Unix milliseconds.
    q.set(el.name, el.type === 'datetime-local' ? String(new Date(el.value).getTime()) : el.value.trim());
  }
  q.set('page', String(page));
  return q.toString();
}

// The filter's choices: each family ("every session event") and each action.
function listActions(actions) {
  if (actionsListed) return;
  actionsListed = true;
  const families = [...new Set(actions.map((a) => a.split('.')[0]))];
  const option = (value, text) => {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    return o;
  };
  $('al-action').append(
    ...families.map((f) => option(f, `every ${f} event`)),
    ...actions.map((a) => option(a, a)),
  );
}

function detailText(detail) {
  if (detail == null) return '';
  if (typeof detail !== 'object') return String(detail);
  return Object.keys(detail).length ? JSON.stringify(detail) : '';
}

async function loadLog(page = logPage) {
  try {
    const r = await call('GET', `/api/v1/audit/log?${filterQuery(page)}`);
    listActions(r.actions);
    logPage = r.page;
    $('al-list').querySelector('tbody').replaceChildren(...r.events.map((e) => {
      const tr = document.createElement('tr');
      tr.dataset.seq = e.seq;
      cell(tr, e.seq);
      cell(tr, timeText(e.at));
      cell(tr, e.action, 'action');
      cell(tr, e.actor);
      cell(tr, e.org);
      cell(tr, e.target);
      const td = cell(tr, '');
      if (e.session) {
        const a = document.createElement('a');
        a.href = `#session/${encodeURIComponent(e.session)}`;
        a.textContent = e.session;
        td.append(a);
      }
      cell(tr, detailText(e.detail), 'detail');
      return tr;
    }));
    $('al-list').hidden = r.total === 0;
    $('al-none').hidden = r.total > 0;
    $('al-page-of').textContent = `Page ${r.page} of ${r.pages} · ${r.total} event${r.total === 1 ? '' : 's'}`;
    $('al-prev').disabled = r.page <= 1;
    $('al-next').disabled = r.page >= r.pages;
  } catch (e) { fail(e); }
}

const CHAIN_WORDS = {
  valid: 'Every event is linked to the one before it by its hash: none was changed, removed or inserted.',
  broken: 'The chain of hashes is broken: an event was changed, removed or inserted.',
};

async function checkChain() {
  const v = $('al-chain');
  v.className = 'verdict';
  v.textContent = 'Checking the audit log\'s chain…';
  try {
    const c = await call('GET', '/api/v1/audit/log/verify');
    v.className = `verdict ${c.result}`;
    const strong = document.createElement('strong');
    strong.textContent = c.result === 'valid' ? 'chain valid' : 'chain broken';
    const words = document.createElement('span');
    words.textContent = c.result === 'valid'
      ? `${CHAIN_WORDS.valid} ${c.verified} events verified; the newest one's hash is SHA256:${c.head_hash}.`
      : `${CHAIN_WORDS.broken} Valid up to event #${c.verified}; ${c.detail}`;
    v.replaceChildren(strong, words);
  } catch (e) {
    v.textContent = '';
    fail(e);
  }
}

$('al-filters').addEventListener('submit', (ev) => { ev.preventDefault(); say(''); loadLog(1); });
$('al-clear').addEventListener('click', () => { $('al-filters').reset(); loadLog(1); });
$('al-prev').addEventListener('click', () => loadLog(logPage - 1));
$('al-next').addEventListener('click', () => loadLog(logPage + 1));

register({
  name: 'auditlog', el: 'auditlog', tab: 'Audit log', hash: '#audit-log', order: 60,
  allowed: (me) => me.role === 'auditor' || me.role === 'admin',
  enter: () => { checkChain(); loadLog(); },
});
