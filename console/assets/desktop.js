// The engineer's view of a customer's desktop: sends the request (from the engineer's page,
// or from the address `assist desktop` opens) over the desktop's WebSocket, shows whom it
// waits for and the time left, then the screen once approved, with what is granted
// (view only, or mouse and keyboard) and for how long. Input goes to the customer's desktop
// only while the picture has the focus and control is granted; when control is revoked the
// picture stays and input stops. With `clipboard` granted, the clipboard panel
// (clipboard.js) shares the customer's clipboard on the same socket. Leaving the page or
// closing the tab is the engineer leaving: the relay ends the session.
import { $, say, grantLeft, linkEvent } from './common.js';
import { register } from './pages.js';
import { socket } from './terminal.js';
import { DesktopView, input } from './desktop-view.js';
import { ClipboardPanel, isClipboard } from './clipboard.js';

let pending = null;
let ws = null;
let view = null;
let deadline = null;
let expires = null;
let control = false;
// Whether a desktop channel is (or was) open: before that there is no picture to show.
let connected = false;
const held = new Set();
let buttons = new Set();

/// Asks for the desktop with the request `req` ({agent, ticket, priority, reason, control,
/// clipboard, minutes}).
export function askDesktop(req) {
  pending = req;
  if (location.hash === '#desktop') start();
  else location.hash = '#desktop';
}

function status(text, cls = '') {
  const p = $('dk-status');
  p.textContent = text;
  p.className = `status ${cls}`;
}

function tick() {
  if (deadline) {
    const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    $('dk-left').textContent = s < 120 ? `${s} s left to answer` : `${Math.round(s / 60)} min left to answer`;
  } else if (expires) $('dk-left').textContent = grantLeft(expires);
  else $('dk-left').textContent = '';
}
setInterval(tick, 1000);

function showMode() {
  const box = $('dk-screen');
  box.dataset.control = control ? 'yes' : 'no';
  $('dk-mode').textContent = !ws || !connected ? '' : control
    ? 'You may use the mouse and keyboard: click the picture, then type. What you do is recorded.'
    : 'View only: you see the screen; the mouse and keyboard stay with the customer.';
}

function send(bytes) {
  if (ws && ws.readyState === 1) ws.send(bytes);
}

/// Input is sent only with control granted and the picture focused.
function mayType() {
  return control && document.activeElement === $('dk-screen');
}

function releaseHeld() {
  for (const code of held) send(input.key(code, false));
  for (const b of buttons) send(input.button(b, false));
  held.clear();
  buttons = new Set();
}

function stop(text, cls = 'bad') {
  status(text, cls);
  deadline = null;
  expires = null;
  control = false;
  connected = false;
  tick();
  showMode();
  $('dk-leave').textContent = 'Back to my sessions';
  $('dk-screen').classList.add('closed');
  clip.ended();
}

function note(text) {
  const li = document.createElement('li');
  li.textContent = text;
  $('dk-notes').append(li);
}

function start() {
  const req = pending;
  pending = null;
  if (!req) return;
  if (ws) ws.close();
  say('');
  $('dk-title').textContent = `Desktop of ${req.agent}`;
  $('dk-screen').classList.remove('closed');
  $('dk-leave').textContent = 'Disconnect';
  $('dk-notes').replaceChildren();
  if (view) view.close();
  control = false;
  connected = false;
  $('dk-screen').hidden = true;
  clip.reset(Boolean(req.clipboard));
  view = new DesktopView($('dk-screen'), { onKeyframeNeeded: () => send(input.keyframeRequest()), latest: true });
  status('Sending the request…');
  ws = socket('/api/v1/desktop');
  const mine = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'desktop', ...req }));
    showMode();
  };
  ws.onmessage = (ev) => {
    if (mine !== ws) return;
    if (typeof ev.data !== 'string') {
      const bytes = new Uint8Array(ev.data);
      if (isClipboard(bytes)) clip.received(bytes);
      else view.feed(bytes);
      return;
    }
    handle(JSON.parse(ev.data));
  };
  ws.onclose = () => {
    if (mine !== ws) return;
    if ($('dk-status').classList.contains('bad') || $('dk-status').classList.contains('done')) return;
    stop('The connection to the relay closed.');
  };
}

function grantedText(granted) {
  return granted.includes('desktop.control') ? 'view and control' : 'view only';
}

function handle(ev) {
  switch (ev.type) {
    case 'requested':
      $('dk-session').textContent = ev.session;
      deadline = ev.deadline;
      status(`Waiting for ${ev.waiting_for}.`);
      break;
    case 'approved':
      deadline = null;
      expires = ev.expires_at;
      status(`Approved${ev.by ? ` by ${ev.by}` : ''}: ${grantedText(ev.granted)}. Opening the desktop…`, 'ok');
      clip.granted(ev.granted);
      break;
    case 'open':
      connected = true;
      $('dk-screen').hidden = false;
      control = Boolean(ev.control);
      status(`Connected: ${control ? 'view and control' : 'view only'}. Everything is recorded.`, 'ok');
      showMode();
      if (control) $('dk-screen').focus();
      break;
    case 'grant':
      expires = ev.in_force ? ev.expires_at : null;
      note(ev.change);
      clip.granted(ev.granted);
      if (!ev.control && control) {
        // Control is gone: nothing more is sent, whatever the page still holds.
        held.clear();
        buttons = new Set();
        control = false;
        showMode();
      }
      if (ev.shell_lost) stop(`The desktop was closed: ${ev.change}`);
      break;
    case 'refused':
      note(ev.message);
      break;
    case 'clipboard':
      clip.event(ev);
      if (ev.state === 'refused') note(`Clipboard not shared: ${ev.message}`);
      break;
    default:
      linkEvent(ev, { status: $('dk-status'), what: 'desktop', stop, note, live: () => Boolean(expires || deadline) });
      break;
  }
  // The time shown follows at once (an approval replaces "left to answer" by the grant's).
  tick();
}

const clip = new ClipboardPanel(send);

const box = $('dk-screen');
box.addEventListener('keydown', (ev) => {
  if (!mayType()) return;
  ev.preventDefault();
  if (!/^[A-Za-z0-9]{1,32}$/.test(ev.code)) return;
  held.add(ev.code);
  send(input.key(ev.code, true));
});
box.addEventListener('keyup', (ev) => {
  if (!mayType()) return;
  ev.preventDefault();
  if (!held.delete(ev.code)) return;
  send(input.key(ev.code, false));
});
box.addEventListener('blur', releaseHeld);
box.addEventListener('mousemove', (ev) => {
  if (!mayType() || !view) return;
  const at = view.toRemote(ev.clientX, ev.clientY);
  if (at) send(input.move(at.x, at.y));
});
box.addEventListener('mousedown', (ev) => {
  box.focus();
  if (!mayType() || !view) return;
  ev.preventDefault();
  const at = view.toRemote(ev.clientX, ev.clientY);
  if (!at || ev.button > 4) return;
  send(input.move(at.x, at.y));
  buttons.add(ev.button);
  send(input.button(ev.button, true));
});
box.addEventListener('mouseup', (ev) => {
  if (!mayType() || !buttons.delete(ev.button)) return;
  ev.preventDefault();
  send(input.button(ev.button, false));
});
box.addEventListener('wheel', (ev) => {
  if (!mayType()) return;
  ev.preventDefault();
  const step = (d) => Math.max(-32, Math.min(32, Math.sign(d) * Math.max(1, Math.round(Math.abs(d) / 100))));
  const dx = ev.deltaX ? step(ev.deltaX) : 0;
  const dy = ev.deltaY ? step(ev.deltaY) : 0;
  if (dx || dy) send(input.wheel(dx, dy));
}, { passive: false });
box.addEventListener('contextmenu', (ev) => { if (control) ev.preventDefault(); });

$('dk-leave').addEventListener('click', () => {
  if (ws) { ws.close(); ws = null; }
  location.hash = '#mine';
});

// The request `assist desktop` puts in the address: #desktop/agent=…&ticket=…&…
function fromAddress(arg) {
  const q = new URLSearchParams(arg);
  if (!q.get('agent')) return null;
  return {
    agent: q.get('agent'),
    ticket: q.get('ticket') || '',
    priority: q.get('priority') || 'p2',
    reason: q.get('reason') || '',
    control: q.get('control') === '1',
    clipboard: q.get('clipboard') === '1',
    minutes: Number(q.get('minutes') || 60),
  };
}

// For people debugging a session from the browser's console (and the tests): what the
// page would send, sent as it is. The relay and the agent enforce the grant whatever
// arrives.
window.assistDesktop = { send, get view() { return view; } };

register({
  name: 'desktop', el: 'desktop-page', hash: '#desktop', prefix: '#desktop/', under: 'mine', order: 7,
  allowed: (me) => me.role === 'engineer',
  enter: (_me, arg) => {
    if (arg) {
      const req = fromAddress(arg);
      // Asked once: the address becomes the plain page, so a reload does not ask again.
      history.replaceState(null, '', '#desktop');
      if (req) pending = req;
    }
    if (pending) start();
    else if (!ws) stop('No desktop is open. Ask for one on “My sessions”.', 'done');
  },
  stop: () => { if (ws) { ws.close(); ws = null; } },
});
