// The approver's page (approvers and admins): pending requests of their organisation,
// most urgent first, kept live by server-sent events, answered with a subset of what was
// asked (file roots narrowed to folders inside them), a shorter time and a note, or
// denied with a reason; the organisation's live
// sessions (revoke one capability, end the session); and the history of decisions.
import { call } from './api.js';
import { $, say, fail, signOut, PRIORITY_WORDS, minutesText, timeText, grantLeft, finished, revokeRow } from './common.js';
import { register } from './pages.js';

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
    // A file capability's roots may be narrowed to directories inside them.
    const files = /^(files\.(?:read|write)):(.*)$/.exec(c);
    if (files) {
      const root = document.createElement('label');
      root.className = 'root';
      root.textContent = 'Only inside';
      const input = document.createElement('input');
      input.className = 'narrow';
      input.dataset.kind = files[1];
      input.dataset.cap = c;
      input.value = files[2];
      input.autocomplete = 'off';
      input.spellcheck = false;
      const hint = document.createElement('span');
      hint.className = 'small hint';
      hint.textContent = 'You may narrow this to a folder inside it, for example a subfolder; never wider.';
      root.append(input, hint);
      caps.append(root);
    }
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

async function approve(li, r) {
  const narrowed = new Map([...li.querySelectorAll('input.narrow')].map((i) => [i.dataset.cap, `${i.dataset.kind}:${i.value.trim()}`]));
  const ticked = [...li.querySelectorAll('input[name=cap]')].filter((b) => b.checked).map((b) => narrowed.get(b.value) || b.value);
  if (ticked.length === 0) return say('Tick at least one thing they may do, or deny the request.');
  const body = { note: li.querySelector('.note').value };
  if (r.duration_ms > 0) body.minutes = Number(li.querySelector('.minutes').value);
  const changed = ticked.length < r.capabilities.length || ticked.some((c) => !r.capabilities.includes(c));
  if (changed) body.capabilities = ticked;
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
  li.querySelector('.watch').href = `#watch/${encodeURIComponent(s.id)}`;
  const ul = li.querySelector('.granted');
  for (const c of s.granted) ul.append(revokeRow('li', c, (cap) => revoke(li, s, cap)));
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

let events = null;

function listen() {
  if (events) events.close();
  events = new EventSource('/api/v1/requests/events');
  events.addEventListener('requests', (ev) => {
    $('live').textContent = 'Live: new requests appear here by themselves.';
    render(JSON.parse(ev.data));
  });
  events.addEventListener('live', (ev) => renderLive(JSON.parse(ev.data)));
  events.addEventListener('signed-out', () => signOut('Your session has ended. Sign in again.'));
  events.onerror = () => {
    $('live').textContent = 'Reconnecting to the relay…';
    call('GET', '/api/v1/me').catch((e) => fail(e));
  };
}

const answersRequests = (me) => me.role === 'approver' || me.role === 'admin';

register({
  name: 'approvals', el: 'answering', tab: 'Approvals', hash: '#approvals', order: 10,
  allowed: answersRequests,
  home: answersRequests,
  start: listen,
  stop: () => { if (events) { events.close(); events = null; } },
});
