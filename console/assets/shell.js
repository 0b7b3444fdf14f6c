// The engineer's shell in the browser: sends the request made on the engineer's page
// over the shell's WebSocket, shows whom it waits for and the time left, then the
// terminal once approved. Keys go to the remote shell, the window's size follows the
// page, and when the shell closes (revoked, expired, ended) the page says why. Leaving
// the page or closing the tab is the engineer leaving: the relay ends the session.
import { $, say, grantLeft } from './common.js';
import { register } from './pages.js';
import { makeTerminal, socket } from './terminal.js';
import { showFiles, hideFiles } from './files.js';

let pending = null;
let ws = null;
let view = null;
let deadline = null;
let expires = null;
let session = null;
const encoder = new TextEncoder();

/// Asks for a shell with the request `req` (from the engineer's form).
export function askShell(req) {
  pending = req;
  if (location.hash === '#shell') start();
  else location.hash = '#shell';
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
  $('sh-term').classList.add('closed');
  if (view) view.term.options.disableStdin = true;
  hideFiles();
}

function start() {
  const req = pending;
  pending = null;
  if (!req) return;
  if (ws) ws.close();
  say('');
  $('sh-title').textContent = `Shell on ${req.agent}`;
  $('sh-term').classList.remove('closed');
  $('sh-leave').textContent = 'Disconnect';
  $('sh-notes').replaceChildren();
  hideFiles();
  session = null;
  if (view) view.dispose();
  view = makeTerminal($('sh-term'));
  showSize();
  status('Sending the request…');
  ws = socket('/api/v1/shell');
  const mine = ws;
  ws.onopen = () => {
    const { cols, rows } = view.term;
    ws.send(JSON.stringify({ type: 'request', ...req, cols, rows }));
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
    stop('The connection to the relay closed.');
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
    case 'left':
      note(ev.message);
      break;
    case 'watching':
      note(ev.message);
      break;
    case 'denied':
      stop(`Your request was ${ev.message}`);
      break;
    case 'closed':
      if (!$('sh-status').classList.contains('bad')) status(`The shell closed: ${ev.message}`, 'done');
      break;
    case 'ended':
      stop(`The session ended: ${ev.message}`, $('sh-status').classList.contains('bad') ? 'bad' : 'done');
      break;
    case 'signed-out':
      stop(ev.message);
      break;
    case 'error':
      if (expires || deadline) note(ev.message);
      else stop(ev.message);
      break;
    default:
      break;
  }
}

$('sh-leave').addEventListener('click', () => {
  if (ws) { ws.close(); ws = null; }
  location.hash = '#mine';
});

register({
  name: 'shell', el: 'shell-page', hash: '#shell', under: 'mine', order: 6,
  allowed: (me) => me.role === 'engineer',
  enter: () => {
    if (pending) start();
    else if (!ws) stop('No shell is open. Ask for one on “My sessions”.', 'done');
    else if (view) view.refit();
  },
  stop: () => { if (ws) { ws.close(); ws = null; } },
});
