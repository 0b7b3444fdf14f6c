// The console's page logic: sign-in (password, then code or enrolment), and the
// approver's list of pending requests and of live sessions, kept live by server-sent
// events, with the history of decisions on demand; and everyone's sessions pages (the
// auditor's: filters, paging, one session with its verified recording).
import { call, ApiError } from './api.js';

const $ = (id) => document.getElementById(id);
const screens = ['signin', 'code', 'enrol', 'recovery', 'home'];

function show(id) {
  for (const s of screens) $(s).hidden = s !== id;
  document.body.dataset.screen = id;
  const first = $(id).querySelector('input');
  if (first) first.focus();
}

function say(text, ok = false) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
  m.classList.toggle('ok', ok);
}

function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    signedOut(e.message);
    return;
  }
  say(e.message || String(e));
}

let events = null;

function signedOut(text) {
  if (events) { events.close(); events = null; }
  signedInAs = null;
  $('who').hidden = true;
  $('logout').hidden = true;
  show('signin');
  say(text || '');
}

async function route() {
  let me;
  try {
    me = await call('GET', '/api/v1/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signedOut('');
    return fail(e);
  }
  $('who').textContent = `${me.user} · ${me.role} · ${me.org}`;
  $('who').hidden = false;
  $('logout').hidden = false;
  if (me.stage === 'code') return show('code');
  if (me.stage === 'enrol') return startEnrol();
  home(me);
}

async function startEnrol() {
  try {
    const e = await call('POST', '/api/v1/mfa/enrol', {});
    $('secret').textContent = e.secret;
    $('qr').src = `/api/v1/mfa/qr.svg?t=${Date.now()}`;
    show('enrol');
  } catch (e) { fail(e); }
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say('');
  try {
    await call('POST', '/api/v1/login', { user: $('user').value, password: $('password').value });
    $('password').value = '';
    await route();
  } catch (e) { fail(e); }
});

$('code-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say('');
  try {
    await call('POST', '/api/v1/login/code', { code: $('code-input').value.trim() });
    $('code-input').value = '';
    await route();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      say(e.message);
    } else { fail(e); }
  }
});

$('enrol-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say('');
  try {
    const r = await call('POST', '/api/v1/mfa/confirm', { code: $('enrol-code').value.trim() });
    $('enrol-code').value = '';
    const list = $('recovery-codes');
    list.replaceChildren(...r.recovery_codes.map((c) => {
      const li = document.createElement('li');
      li.textContent = c;
      return li;
    }));
    show('recovery');
  } catch (e) { fail(e); }
});

$('recovery-done').addEventListener('click', () => route());

$('logout').addEventListener('click', async () => {
  try { await call('POST', '/api/v1/logout', {}); } catch { /* signed out either way */ }
  signedOut('You have signed out.');
  $('message').classList.add('ok');
});

// ---- the approver's page ----

const PRIORITY_WORDS = { p0: 'P0 · critical', p1: 'P1 · urgent', p2: 'P2', p3: 'P3' };

function minutesText(ms) {
  const m = Math.round(ms / 60000);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

function leftText(deadline) {
  const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  if (s === 0) return 'expiring';
  return s < 120 ? `${s} s left to answer` : `${Math.round(s / 60)} min left to answer`;
}

let current = [];

function render(list) {
  current = list;
  const ul = $('requests');
  // A session's escalation is a new question: keyed by session and deadline.
  const key = (r) => `${r.id}@${r.deadline}`;
  const keep = new Map([...ul.children].map((li) => [li.dataset.key, li]));
  // A new request makes an earlier "Approved …" note stale.
  if (list.some((r) => !keep.has(key(r))) && $('message').classList.contains('ok')) say('');
  const items = list.map((r) => keep.get(key(r)) || build(r));
  ul.replaceChildren(...items);
  $('none').hidden = list.length > 0;
  tick();
}

function tick() {
  for (const li of $('requests').children) {
    const r = current.find((x) => `${x.id}@${x.deadline}` === li.dataset.key);
    if (r && r.deadline) li.querySelector('.left').textContent = leftText(r.deadline);
  }
}
setInterval(tick, 1000);

function build(r) {
  const li = $('request-template').content.firstElementChild.cloneNode(true);
  li.dataset.id = r.id;
  li.dataset.key = `${r.id}@${r.deadline}`;
  const priority = String(r.priority).toLowerCase();
  if (priority === 'p0' || priority === 'p1') li.classList.add('urgent');
  li.querySelector('.priority').textContent = PRIORITY_WORDS[priority] || r.priority;
  li.querySelector('.engineer').textContent = `${r.engineer} (${r.engineer_org})`;
  li.querySelector('.agent').textContent = r.agent;
  if (r.escalation) li.querySelector('.verb').textContent = 'asks for more on';
  li.querySelector('.ticket').textContent = r.ticket;
  li.querySelector('.reason').textContent = r.reason;
  const extends_ = r.duration_ms > 0;
  li.querySelector('.duration').textContent = r.escalation
    ? (extends_ ? `${minutesText(r.duration_ms)} more (asked during the session)` : 'no extra time (asked during the session)')
    : minutesText(r.duration_ms);
  const caps = li.querySelector('.caps');
  for (const c of r.capabilities) {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = true;
    box.value = c;
    box.name = 'cap';
    label.append(box, document.createTextNode(c));
    caps.append(label);
  }
  const select = li.querySelector('.minutes');
  // An escalation that asks for no more time has none to shorten.
  if (!extends_) select.closest('label').hidden = true;
  const asked = Math.max(1, Math.round(r.duration_ms / 60000));
  const choices = [...new Set([asked, 5, 10, 15, 30, 60, 120, 240].filter((m) => m <= asked))].sort((a, b) => b - a);
  for (const m of choices) {
    const o = document.createElement('option');
    o.value = String(m);
    o.textContent = m === asked ? `${minutesText(m * 60000)} (as asked)` : minutesText(m * 60000);
    select.append(o);
  }
  li.querySelector('.approve').addEventListener('click', () => approve(li, r));
  li.querySelector('.deny').addEventListener('click', () => {
    li.querySelector('.deny-box').hidden = false;
    li.querySelector('.deny-reason').focus();
  });
  li.querySelector('.deny-confirm').addEventListener('click', () => deny(li, r));
  return li;
}

// An answered card stays, greyed and inert, until the live list drops it.
function finished(li) {
  li.classList.add('done');
  for (const el of li.querySelectorAll('button, input, select')) el.disabled = true;
}

async function approve(li, r) {
  const ticked = [...li.querySelectorAll('input[name=cap]')].filter((b) => b.checked).map((b) => b.value);
  if (ticked.length === 0) return say('Tick at least one thing they may do, or deny the request.');
  const body = { note: li.querySelector('.note').value };
  if (r.duration_ms > 0) body.minutes = Number(li.querySelector('.minutes').value);
  if (ticked.length < r.capabilities.length) body.capabilities = ticked;
  try {
    await call('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/approve`, body);
    say(`Approved ${r.engineer}'s request on ${r.agent}.`, true);
    finished(li);
  } catch (e) { fail(e); }
}

async function deny(li, r) {
  const reason = li.querySelector('.deny-reason').value.trim();
  if (!reason) return say('Say why you deny it: the engineer sees your reason.');
  try {
    await call('POST', `/api/v1/requests/${encodeURIComponent(r.id)}/deny`, { reason });
    say(`Denied ${r.engineer}'s request on ${r.agent}.`, true);
    finished(li);
  } catch (e) { fail(e); }
}

// ---- live sessions and history ----

function timeText(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function grantLeft(expires) {
  const s = Math.max(0, Math.round((expires - Date.now()) / 1000));
  if (s === 0) return 'running out';
  if (s < 120) return `${s} s left`;
  return `${minutesText(s * 1000)} left`;
}

let liveNow = [];

function renderLive(list) {
  liveNow = list;
  const ul = $('live-sessions');
  // Rebuilt only when the session or its grant changed, so a half-typed reason survives.
  const key = (s) => `${s.id}@${s.grant_expires_at}@${s.granted.join(',')}@${s.state}`;
  const keep = new Map([...ul.children].map((li) => [li.dataset.key, li]));
  ul.replaceChildren(...list.map((s) => keep.get(key(s)) || buildLive(s, key(s))));
  $('live-none').hidden = list.length > 0;
  tickLive();
}

function tickLive() {
  for (const li of $('live-sessions').children) {
    const s = liveNow.find((x) => x.id === li.dataset.id);
    if (s && s.grant_expires_at) li.querySelector('.left').textContent = grantLeft(s.grant_expires_at);
  }
}
setInterval(tickLive, 1000);

function buildLive(s, key) {
  const li = $('live-template').content.firstElementChild.cloneNode(true);
  li.dataset.id = s.id;
  li.dataset.key = key;
  li.querySelector('.engineer').textContent = `${s.engineer} (${s.engineer_org})`;
  li.querySelector('.agent').textContent = s.agent;
  li.querySelector('.ticket').textContent = s.ticket;
  li.querySelector('.reason').textContent = s.reason;
  li.querySelector('.state').textContent = s.state === 'active' ? 'connected' : 'approved, not connected yet';
  li.querySelector('.until').textContent = s.grant_expires_at ? timeText(s.grant_expires_at) : '';
  const ul = li.querySelector('.granted');
  for (const c of s.granted) {
    const row = document.createElement('li');
    const code = document.createElement('code');
    code.textContent = c;
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'revoke secondary';
    b.dataset.cap = c;
    b.textContent = 'Revoke';
    b.addEventListener('click', () => revoke(li, s, c));
    row.append(code, b);
    ul.append(row);
  }
  li.querySelector('.end').addEventListener('click', () => {
    li.querySelector('.end-box').hidden = false;
    li.querySelector('.end-reason').focus();
  });
  li.querySelector('.end-confirm').addEventListener('click', () => endSession(li, s));
  return li;
}

async function revoke(li, s, cap) {
  try {
    await call('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/revoke`, { capabilities: [cap] });
    say(`Revoked ${cap} from ${s.engineer}'s session on ${s.agent}.`, true);
    finished(li);
  } catch (e) { fail(e); }
}

async function endSession(li, s) {
  const reason = li.querySelector('.end-reason').value.trim();
  if (!reason) return say('Say why you end it: the engineer sees your reason.');
  try {
    await call('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/end`, { reason });
    say(`Ended ${s.engineer}'s session on ${s.agent}.`, true);
    finished(li);
  } catch (e) { fail(e); }
}

const DECISIONS = { approved: 'approved', active: 'approved', closed: 'approved', denied: 'denied', expired: 'expired (nobody answered)' };

async function loadHistory() {
  try {
    const list = await call('GET', '/api/v1/sessions/history');
    const body = $('history').querySelector('tbody');
    body.replaceChildren(...list.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.id = s.id;
      const cells = [
        timeText(s.decided_at || s.ended_at || s.requested_at),
        `${s.engineer} (${s.engineer_org})`,
        s.agent,
        s.ticket,
        DECISIONS[s.state] || s.state,
        s.approver || '',
        s.note || '',
      ];
      for (const text of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      tr.children[4].className = s.state;
      return tr;
    }));
    $('history').hidden = list.length === 0;
    $('history-none').hidden = list.length > 0;
    $('history-load').textContent = 'Refresh';
  } catch (e) { fail(e); }
}
$('history-load').addEventListener('click', loadHistory);

// ---- the auditor's pages: sessions, and one session ----

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

let reviewPage = 1;

function filterQuery(page) {
  const q = new URLSearchParams();
  for (const el of $('filters').elements) {
    if (!el.name || !el.value.trim()) continue;
    // Times are typed in the browser's zone and sent as Unix milliseconds.
    q.set(el.name, el.type === 'datetime-local' ? String(new Date(el.value).getTime()) : el.value.trim());
  }
  q.set('page', String(page));
  return q.toString();
}

async function loadSessions(page = reviewPage) {
  try {
    const r = await call('GET', `/api/v1/audit/sessions?${filterQuery(page)}`);
    reviewPage = r.page;
    const body = $('review-list').querySelector('tbody');
    body.replaceChildren(...r.sessions.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.id = s.id;
      cell(tr, timeText(s.requested_at));
      cell(tr, `${s.engineer} (${s.engineer_org})`);
      cell(tr, s.agent);
      cell(tr, s.ticket);
      cell(tr, s.state, s.state);
      cell(tr, s.ended_at ? `${timeText(s.ended_at)} · ${s.end_reason || ''}` : '');
      tr.addEventListener('click', () => { location.hash = `#session/${encodeURIComponent(s.id)}`; });
      return tr;
    }));
    $('review-list').hidden = r.total === 0;
    $('review-none').hidden = r.total > 0;
    $('page-of').textContent = `Page ${r.page} of ${r.pages} · ${r.total} session${r.total === 1 ? '' : 's'}`;
    $('page-prev').disabled = r.page <= 1;
    $('page-next').disabled = r.page >= r.pages;
  } catch (e) { fail(e); }
}

$('filters').addEventListener('submit', (ev) => { ev.preventDefault(); say(''); loadSessions(1); });
$('filters-clear').addEventListener('click', () => { $('filters').reset(); loadSessions(1); });
$('page-prev').addEventListener('click', () => loadSessions(reviewPage - 1));
$('page-next').addEventListener('click', () => loadSessions(reviewPage + 1));

const VERDICT_WORDS = {
  valid: 'The recording is complete and its seal, signed by this relay, verifies.',
  truncated: 'The recording was never sealed: it verifies only up to where it stops.',
  tampered: 'The recording was changed after it was written.',
  missing: 'No recording is stored for this session.',
  off: 'This relay does not record sessions.',
  unreadable: 'The recording cannot be read.',
};

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v == null || v === '') continue;
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

// The vendored player (console/vendor/pins.txt), loaded the first time a replay is shown.
let playerLoaded = null;
function loadPlayer() {
  if (!playerLoaded) {
    playerLoaded = new Promise((resolve, reject) => {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/vendor/asciinema-player/asciinema-player.css';
      document.head.append(css);
      const js = document.createElement('script');
      js.src = '/vendor/asciinema-player/asciinema-player.min.js';
      js.onload = () => resolve(window.AsciinemaPlayer);
      js.onerror = () => { playerLoaded = null; reject(new Error('The replay player could not be loaded.')); };
      document.head.append(js);
    });
  }
  return playerLoaded;
}

let player = null;

async function showReplay(s, recording) {
  if (player) { player.dispose(); player = null; }
  $('sp-player').replaceChildren();
  const playable = recording.result === 'valid' || recording.result === 'truncated';
  $('sp-no-replay').hidden = playable;
  if (!playable) {
    $('sp-no-replay').textContent = 'There is no recording to replay.';
    return;
  }
  try {
    const AP = await loadPlayer();
    // Markers (approval, revocation, end) come from the recording itself.
    player = AP.create(`/api/v1/audit/sessions/${encodeURIComponent(s.id)}/asciicast`, $('sp-player'), {
      fit: 'width', idleTimeLimit: 2, controls: true, preload: true,
    });
  } catch (e) { fail(e); }
}

async function loadSession(id) {
  let d;
  try {
    d = await call('GET', `/api/v1/audit/sessions/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      $('sp-title').textContent = 'No such session';
      say('There is no session with that name that you may see.');
      for (const part of ['sp-recording', 'sp-facts']) $(part).replaceChildren();
      for (const t of ['sp-grants', 'sp-transfers']) $(t).querySelector('tbody').replaceChildren();
      $('sp-events').replaceChildren();
      $('sp-body').hidden = true;
      return;
    }
    return fail(e);
  }
  const s = d.session;
  document.body.dataset.session = s.id;
  $('sp-title').textContent = `${s.engineer} on ${s.agent} · ${s.ticket}`;
  $('sp-bundle').href = `/api/v1/audit/sessions/${encodeURIComponent(s.id)}/bundle`;
  $('sp-body').hidden = false;
  const v = $('sp-recording');
  v.className = `verdict ${d.recording.result}`;
  const strong = document.createElement('strong');
  strong.textContent = d.recording.result;
  const words = document.createElement('span');
  words.textContent = `${VERDICT_WORDS[d.recording.result] || ''} ${d.recording.detail}`;
  v.replaceChildren(strong, words);
  showReplay(s, d.recording);
  facts($('sp-facts'), [
    ['Session', s.id],
    ['Engineer', `${s.engineer} (${s.engineer_org})`],
    ['Agent', `${s.agent} (${s.agent_org})`],
    ['Priority', String(s.priority).toUpperCase()],
    ['Reason', s.reason],
    ['Asked for', s.capabilities.join(', ')],
    ['State', s.state],
    ['Requested', timeText(s.requested_at)],
    ['Decided by', s.approver && `${s.approver}${s.decided_at ? `, ${timeText(s.decided_at)}` : ''}`],
    ['Note', s.note],
    ['Started', s.started_at && timeText(s.started_at)],
    ['Ended', s.ended_at && `${timeText(s.ended_at)}: ${s.end_reason || ''}`],
  ]);
  $('sp-grants').querySelector('tbody').replaceChildren(...d.grants.map((g) => {
    const tr = document.createElement('tr');
    cell(tr, g.revision);
    cell(tr, timeText(g.at));
    cell(tr, g.action);
    cell(tr, g.by);
    cell(tr, g.granted.join(', ') || 'nothing');
    cell(tr, g.expires_at && timeText(g.expires_at));
    cell(tr, g.note);
    return tr;
  }));
  $('sp-transfers').hidden = d.transfers.length === 0;
  $('sp-no-transfers').hidden = d.transfers.length > 0;
  $('sp-transfers').querySelector('tbody').replaceChildren(...d.transfers.map((t) => {
    const tr = document.createElement('tr');
    cell(tr, timeText(t.at));
    cell(tr, t.path);
    cell(tr, t.direction);
    cell(tr, t.size);
    cell(tr, t.sha256_agent, 'hash');
    cell(tr, t.sha256_engineer || '(not reported)', 'hash');
    cell(tr, t.matched ? 'yes' : 'NO', t.matched ? '' : 'denied');
    return tr;
  }));
  $('sp-events').replaceChildren(...d.events.map((e) => {
    const li = document.createElement('li');
    const when = document.createElement('span');
    when.textContent = `${new Date(e.at).toLocaleTimeString()} `;
    const action = document.createElement('span');
    action.className = 'action';
    action.textContent = e.action;
    const by = document.createTextNode(` by ${e.actor}`);
    li.append(when, action, by);
    if (e.detail && typeof e.detail === 'object' && Object.keys(e.detail).length) {
      const code = document.createElement('code');
      code.textContent = JSON.stringify(e.detail);
      li.append(code);
    }
    return li;
  }));
}

// ---- which page ----

let signedInAs = null;
const answersRequests = (me) => me.role === 'approver' || me.role === 'admin';

function view() {
  if (!signedInAs) return;
  const h = location.hash;
  const answers = answersRequests(signedInAs);
  const which = h.startsWith('#session/') ? 'session'
    : (h === '#sessions' || !answers) ? 'sessions' : 'approvals';
  $('answering').hidden = which !== 'approvals';
  $('review').hidden = which !== 'sessions';
  $('session-page').hidden = which !== 'session';
  $('tab-approvals').classList.toggle('current', which === 'approvals');
  $('tab-sessions').classList.toggle('current', which !== 'approvals');
  document.body.dataset.view = which;
  if (which === 'sessions') loadSessions();
  if (which === 'session') loadSession(decodeURIComponent(h.slice('#session/'.length)));
}
window.addEventListener('hashchange', () => { say(''); view(); });

function home(me) {
  signedInAs = me;
  show('home');
  const answers = answersRequests(me);
  // Only approvers and admins have more than one page to choose from.
  $('tabs').hidden = !answers;
  document.body.dataset.role = me.role;
  view();
  if (!answers) return;
  if (events) events.close();
  events = new EventSource('/api/v1/requests/events');
  events.addEventListener('requests', (ev) => {
    $('live').textContent = 'Live: new requests appear here by themselves.';
    render(JSON.parse(ev.data));
  });
  events.addEventListener('live', (ev) => renderLive(JSON.parse(ev.data)));
  events.addEventListener('signed-out', () => signedOut('Your session has ended. Sign in again.'));
  events.onerror = () => {
    $('live').textContent = 'Reconnecting to the relay…';
    call('GET', '/api/v1/me').catch((e) => fail(e));
  };
}

route();
