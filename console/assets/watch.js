// Watching a live session (approvers of the agent's organisation, admins): the terminal
// as the engineer sees it, from the current screen on, read-only; what is granted, the
// time left and the files moved so far (with both ends' SHA-256 agreeing or not); and, from the same page, revoking a capability or ending the session. What
// a watcher types goes nowhere: the relay gives a watch no way in.
import { call } from './api.js';
import { $, say, fail, grantLeft, timeText, revokeRow } from './common.js';
import { register } from './pages.js';
import { makeTerminal, socket } from './terminal.js';

let ws = null;
let view = null;
let id = null;
let session = null;
let poll = null;

function status(text, cls = '') {
  const p = $('w-status');
  p.textContent = text;
  p.className = `status ${cls}`;
}

function renderGrant() {
  if (!session) return;
  $('w-granted').replaceChildren(...session.granted.map((c) => revokeRow('li', c, revoke)));
  $('w-until').textContent = session.expires_at ? timeText(session.expires_at) : '';
  tick();
}

function tick() {
  $('w-left').textContent = session && session.expires_at && !$('w-term').classList.contains('closed')
    ? grantLeft(session.expires_at) : '';
}
setInterval(tick, 1000);

function renderTransfers(list) {
  $('w-no-transfers').hidden = list.length > 0;
  $('w-transfers').replaceChildren(...list.map((t) => {
    const li = document.createElement('li');
    const way = t.direction === 'upload' ? 'to the server' : 'from the server';
    const check = t.matched ? 'both ends agree' : 'THE TWO ENDS DIFFER';
    li.textContent = `${timeText(t.at)} · ${way} · ${t.path} · ${t.size} bytes · SHA-256 ${t.sha256_agent.slice(0, 16)}… ${check}`;
    if (!t.matched) li.className = 'denied';
    return li;
  }));
}

async function refresh() {
  try {
    const live = await call('GET', '/api/v1/sessions/live');
    const s = live.find((x) => x.id === id);
    if (s && session) {
      session.granted = s.granted;
      session.expires_at = s.grant_expires_at;
      renderGrant();
    }
    if (id) renderTransfers(await call('GET', `/api/v1/sessions/${encodeURIComponent(id)}/files/transfers`));
  } catch (e) { fail(e); }
}

async function revoke(cap) {
  try {
    await call('POST', `/api/v1/sessions/${encodeURIComponent(id)}/revoke`, { capabilities: [cap] });
    say(`Revoked ${cap}.`, true);
    refresh();
  } catch (e) { fail(e); }
}

$('w-end-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const reason = $('w-end-reason').value.trim();
  if (!reason) return say('Say why you end it: the engineer sees your reason.');
  try {
    await call('POST', `/api/v1/sessions/${encodeURIComponent(id)}/end`, { reason });
    say('Ended the session.', true);
  } catch (e) { fail(e); }
});

function close() {
  if (ws) { ws.close(); ws = null; }
  if (poll) { clearInterval(poll); poll = null; }
}

function open(sessionId) {
  close();
  id = sessionId;
  session = null;
  $('w-title').textContent = `Watching ${id}`;
  $('w-term').classList.remove('closed');
  $('w-term').hidden = false;
  $('w-granted').replaceChildren();
  $('w-facts').replaceChildren();
  renderTransfers([]);
  if (view) view.dispose();
  view = makeTerminal($('w-term'), { readOnly: true });
  status('Connecting…');
  ws = socket(`/api/v1/sessions/${encodeURIComponent(id)}/watch`);
  const mine = ws;
  ws.onmessage = (ev) => {
    if (mine !== ws) return;
    if (typeof ev.data !== 'string') { view.term.write(new Uint8Array(ev.data)); return; }
    const m = JSON.parse(ev.data);
    if (m.type === 'watching') {
      session = m;
      $('w-title').textContent = `${m.engineer} (${m.engineer_org}) on ${m.agent}`;
      const dl = $('w-facts');
      for (const [k, v] of [['Ticket', m.ticket], ['Session', m.session]]) {
        const dt = document.createElement('dt');
        dt.textContent = k;
        const dd = document.createElement('dd');
        dd.textContent = v;
        dl.append(dt, dd);
      }
      renderGrant();
      status('Live, read-only: you see what the engineer sees. What you type goes nowhere.', 'ok');
    } else if (m.type === 'ended') {
      status(`The session ended: ${m.message}`, 'done');
      $('w-term').classList.add('closed');
      $('w-granted').replaceChildren();
      tick();
    } else if (m.type === 'unavailable') {
      // Another relay of the cluster holds it (the message names it), or it is not live yet.
      status(m.message, 'done');
      $('w-term').classList.add('closed');
      // Nothing will be shown here: no empty terminal under the message.
      $('w-term').hidden = true;
    } else if (m.type === 'refused') {
      status(m.message, 'bad');
    } else if (m.message) {
      say(m.message);
    }
  };
  ws.onclose = () => {
    if (mine === ws && !$('w-status').classList.contains('done')) {
      status('This session cannot be watched now (it ended, or it is not yours to watch).', 'done');
    }
  };
  poll = setInterval(refresh, 2000);
}

register({
  name: 'watch', el: 'watch-page', prefix: '#watch/', under: 'approvals', order: 11,
  allowed: (me) => me.role === 'approver' || me.role === 'admin',
  enter: (me, arg) => { if (arg && arg !== id) open(arg); else if (!ws && arg) open(arg); },
  stop: close,
});

// Leaving the page is leaving the watch (audited, and the engineer is told).
window.addEventListener('hashchange', () => {
  if (!location.hash.startsWith('#watch/')) { close(); id = null; }
});
