// The engineer's shell in the browser: sends the request made on the engineer's page
// over the shell's WebSocket, shows whom it waits for and the time left, then the
// terminal once approved. Keys go to the remote shell, the window's size follows the
// page, and when the shell closes (revoked, expired, ended) the page says why. Leaving
// the page with "Disconnect" ends the session; closing the tab or losing the network only
// closes the terminal: the session waits a few minutes, and "Reconnect" (here, or on “My
// sessions”) picks it up again without asking for consent again.
import { $, say, grantLeft, linkEvent } from './common.js';
import { register } from './pages.js';
import { makeTerminal, socket } from './terminal.js';
import { showFiles, hideFiles } from './files.js';

let pending = null;
let ws = null;
let view = null;
let deadline = null;
let expires = null;
let session = null;
// The session to pick up again after the connection was lost.
let lost = null;
const encoder = new TextEncoder();

/// Asks for a shell with the request `req` (from the engineer's form).
export function askShell(req) {
  pending = req;
  if (location.hash === '#shell') start();
  else location.hash = '#shell';
}

/// Picks up the engineer's live session `id` on `agent`, whose page went away.
export function reattachShell(id, agent) {
  pending = { reattach: id, agent };
  if (location.hash === '#shell') start();
  else location.hash = '#shell';
}

function leave() {
  if (ws) {
    if (ws.readyState === 1) ws.send(JSON.stringify({ type: 'leave' }));
    ws.close();
    ws = null;
  }
}

function status(text, cls = '') {
  const p = $('sh-status');
  p.textContent = text;
  p.className = `status ${cls}`;
}

function tick() {
  if (deadline) $('sh-left').textContent = leftToAnswer(deadline);
  else if (expires) $('sh-left').textContent = grantLeft(expires);
  else $('sh-left').textContent = '';
}
setInterval(tick, 1000);

function leftToAnswer(d) {
  const s = Math.max(0, Math.round((d - Date.now()) / 1000));
  return s < 120 ? `${s} s left to answer` : `${Math.round(s / 60)} min left to answer`;
}

function showSize() {
  if (view) $('sh-size').textContent = `${view.term.cols} × ${view.term.rows}`;
}

function stop(text, cls = 'bad') {
  status(text, cls);
  deadline = null;
  expires = null;
  tick();
  $('sh-leave').textContent = 'Back to my sessions';
  $('sh-reconnect').hidden = true;
  $('sh-term').classList.add('closed');
  if (view) view.term.options.disableStdin = true;
  hideFiles();
}

function start() {
  const req = pending;
  pending = null;
  if (!req) return;
  leave();
  say('');
  $('sh-title').textContent = `Shell on ${req.agent}`;
  $('sh-reconnect').hidden = true;
  $('sh-term').classList.remove('closed');
  $('sh-leave').textContent = 'Disconnect';
  $('sh-notes').replaceChildren();
  hideFiles();
  session = null;
  if (view) view.dispose();
  view = makeTerminal($('sh-term'));
  showSize();
  status(req.reattach ? 'Reconnecting…' : 'Sending the request…');
  ws = socket('/api/v1/shell');
  const mine = ws;
  ws.onopen = () => {
    const { cols, rows } = view.term;
    if (req.reattach) ws.send(JSON.stringify({ type: 'reattach', session: req.reattach, cols, rows }));
    else ws.send(JSON.stringify({ type: 'request', ...req, cols, rows }));
  };
  ws.onmessage = (ev) => {
    if (mine !== ws) return;
    if (typeof ev.data !== 'string') {
      view.term.write(new Uint8Array(ev.data));
      return;
    }
    handle(JSON.parse(ev.data));
  };
  ws.onclose = () => {
    if (mine !== ws) return;
    if ($('sh-status').classList.contains('bad') || $('sh-status').classList.contains('done')) return;
    const live = session && expires;
    stop(live
      ? 'The connection to the relay was lost. The session waits a few minutes for you: reconnect to pick it up.'
      : 'The connection to the relay closed.');
    if (live) {
      lost = { reattach: session, agent: req.agent };
      $('sh-reconnect').hidden = false;
    }
  };
  view.term.onData((d) => { if (ws && ws.readyState === 1) ws.send(encoder.encode(d)); });
  view.term.onBinary((d) => {
    if (ws && ws.readyState === 1) ws.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 255));
  });
  view.term.onResize(({ cols, rows }) => {
    showSize();
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  });
}

function note(text) {
  const li = document.createElement('li');
  li.textContent = text;
  $('sh-notes').append(li);
}

function handle(ev) {
  switch (ev.type) {
    case 'requested':
      $('sh-session').textContent = ev.session;
      session = ev.session;
      deadline = ev.deadline;
      status(`Waiting for ${ev.waiting_for}.`);
      break;
    case 'approved':
      deadline = null;
      expires = ev.expires_at;
      status(`Approved${ev.by ? ` by ${ev.by}` : ''}: ${ev.granted.join(', ')}. Opening the shell…`, 'ok');
      showFiles(ev.session, ev.granted);
      break;
    case 'reattached':
      session = ev.session;
      $('sh-session').textContent = ev.session;
      deadline = null;
      expires = ev.expires_at;
      note('Reconnected: the session was waiting for you. A new terminal was opened.');
      status('Reconnected. Opening the shell…', 'ok');
      showFiles(ev.session, ev.granted);
      break;
    case 'open':
      status('Connected. Everything you type is recorded.', 'ok');
      view.term.focus();
      break;
    case 'grant':
      expires = ev.in_force ? ev.expires_at : null;
      note(ev.change);
      if (session && ev.in_force) showFiles(session, ev.granted);
      if (ev.shell_lost) stop(`The terminal was closed: ${ev.change}`);
      break;
    default:
      linkEvent(ev, { status: $('sh-status'), what: 'shell', stop, note, live: () => Boolean(expires || deadline) });
      break;
  }
}

$('sh-leave').addEventListener('click', () => {
  leave();
  location.hash = '#mine';
});

$('sh-reconnect').addEventListener('click', () => {
  if (!lost) return;
  pending = lost;
  lost = null;
  start();
});

register({
  name: 'shell', el: 'shell-page', hash: '#shell', under: 'mine', order: 6,
  allowed: (me) => me.role === 'engineer',
  enter: () => {
    if (pending) start();
    else if (!ws) stop('No shell is open. Ask for one on “My sessions”.', 'done');
    else if (view) view.refit();
  },
  stop: () => leave(),
});
