// The engineer's own page: their sessions and requests and where each stands (waiting for
// whom and how long, approved or denied with the note, live with its grant, ended and
// why), refreshed every few seconds while shown; and the form that asks for a shell in
// the browser (shell.js opens it). It decides nothing: the relay checks every request as
// it checks `assist shell`.
import { call } from './api.js';
import { $, say, fail, PRIORITY_WORDS, timeText, grantLeft, minutesText, facts } from './common.js';
import { register } from './pages.js';
import { askShell, reattachShell } from './shell.js';
import { askDesktop } from './desktop.js';

const REFRESH_MS = 3000;
let timer = null;
let mine = [];

function waitText(s) {
  const left = Math.max(0, Math.round((s.consent_deadline - Date.now()) / 1000));
  return left < 120 ? `${left} s left` : `${Math.round(left / 60)} min left`;
}

/// Where a session stands, in words.
export function standing(s) {
  switch (s.state) {
    case 'requested':
      return `Waiting for ${s.waiting_for || 'consent'}`;
    case 'approved':
      return `Approved by ${s.approver || 'the customer'}${s.note ? ` (“${s.note}”)` : ''}; not connected yet`;
    case 'active':
      return `Live, approved by ${s.approver || 'the customer'}${s.note ? ` (“${s.note}”)` : ''}`;
    case 'denied':
      return `Denied${s.approver ? ` by ${s.approver}` : ''}${s.note ? `: ${s.note}` : ''}`;
    case 'expired':
      return 'Nobody answered in time';
    case 'closed':
      return `Ended: ${s.end_reason || 'closed'}`;
    default:
      return s.state;
  }
}

function render(list) {
  mine = list;
  const ul = $('mine-list');
  ul.replaceChildren(...list.map((s) => {
    const li = document.createElement('li');
    li.className = `request mine ${s.state}`;
    li.dataset.id = s.id;
    const head = document.createElement('div');
    head.className = 'head';
    const pr = document.createElement('span');
    pr.className = 'priority';
    pr.textContent = PRIORITY_WORDS[String(s.priority).toLowerCase()] || s.priority;
    const agent = document.createElement('strong');
    agent.textContent = s.agent;
    const left = document.createElement('span');
    left.className = 'left';
    head.append(pr, agent, left);
    const st = document.createElement('p');
    st.className = 'standing';
    st.textContent = standing(s);
    const dl = document.createElement('dl');
    facts(dl, [
      ['Ticket', s.ticket],
      ['Reason', s.reason],
      ['Asked for', s.capabilities.join(', ')],
      ['Granted', s.granted.length ? s.granted.join(', ') : null],
      ['Until', s.grant_expires_at && (s.state === 'approved' || s.state === 'active') ? timeText(s.grant_expires_at) : null],
      ['Requested', timeText(s.requested_at)],
      ['Ended', s.ended_at ? timeText(s.ended_at) : null],
    ]);
    li.append(head, st, dl);
    if ((s.state === 'approved' || s.state === 'active') && s.granted.includes('shell')) {
      // A session whose page went away (tab closed, network lost) waits to be picked up.
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'reattach';
      b.textContent = 'Reconnect to its terminal';
      b.addEventListener('click', () => reattachShell(s.id, s.agent));
      li.append(b);
    }
    return li;
  }));
  $('mine-none').hidden = list.length > 0;
  tick();
}

function tick() {
  for (const li of $('mine-list').children) {
    const s = mine.find((x) => x.id === li.dataset.id);
    if (!s) continue;
    let text = '';
    if (s.state === 'requested' && s.consent_deadline) text = waitText(s);
    else if ((s.state === 'approved' || s.state === 'active') && s.grant_expires_at) text = grantLeft(s.grant_expires_at);
    li.querySelector('.left').textContent = text;
  }
}
setInterval(tick, 1000);

async function refresh() {
  try {
    render(await call('GET', '/api/v1/mine'));
  } catch (e) { fail(e); }
}

async function loadAgents() {
  try {
    const agents = await call('GET', '/api/v1/agents');
    const select = $('sf-agent');
    const chosen = select.value;
    select.replaceChildren(...agents.map((a) => {
      const o = document.createElement('option');
      o.value = a.name;
      o.textContent = `${a.name} (${a.org})${a.online ? '' : ' · offline'}`;
      o.disabled = !a.online;
      return o;
    }));
    if (chosen) select.value = chosen;
    $('sf-no-agents').hidden = agents.some((a) => a.online);
  } catch (e) { fail(e); }
}

for (const m of [15, 30, 60, 120, 240]) {
  const o = document.createElement('option');
  o.value = String(m);
  o.textContent = minutesText(m * 60000);
  if (m === 60) o.selected = true;
  $('sf-minutes').append(o);
}

$('shell-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  say('');
  const caps = $('sf-caps').value.split(/[\s,]+/).filter(Boolean);
  if (!caps.includes('shell')) return say('A shell in the browser needs the capability “shell”.');
  askShell({
    agent: $('sf-agent').value,
    ticket: $('sf-ticket').value.trim(),
    priority: $('sf-priority').value,
    reason: $('sf-reason').value.trim(),
    capabilities: caps,
    minutes: Number($('sf-minutes').value),
  });
});

$('sf-desktop').addEventListener('click', () => {
  say('');
  const form = $('shell-form');
  if (!form.reportValidity()) return;
  askDesktop({
    agent: $('sf-agent').value,
    ticket: $('sf-ticket').value.trim(),
    priority: $('sf-priority').value,
    reason: $('sf-reason').value.trim(),
    control: $('sf-control').checked,
    clipboard: $('sf-clipboard').checked,
    minutes: Number($('sf-minutes').value),
  });
});

const isEngineer = (me) => me.role === 'engineer';

register({
  name: 'mine', el: 'mine', tab: 'My sessions', hash: '#mine', order: 5,
  allowed: isEngineer,
  home: isEngineer,
  enter: () => {
    refresh();
    loadAgents();
    if (!timer) timer = setInterval(() => { if (!$('mine').hidden) refresh(); }, REFRESH_MS);
  },
  stop: () => { if (timer) { clearInterval(timer); timer = null; } },
});
