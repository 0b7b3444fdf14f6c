// What every page of the console shares: finding elements, the message line, turning an
// API failure into words (or back to the sign-in form), and the ways times, durations and
// facts are written. No page logic lives here.
import { ApiError } from './api.js';

export const $ = (id) => document.getElementById(id);

export function say(text, ok = false) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
  m.classList.toggle('ok', ok);
}

let onSignedOut = () => {};

/// What to do when the relay says the session is gone (set once by app.js).
export function whenSignedOut(f) { onSignedOut = f; }

export function signOut(text) { onSignedOut(text); }

export function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    onSignedOut(e.message);
    return;
  }
  say(e.message || String(e));
}

export const PRIORITY_WORDS = { p0: 'P0 · critical', p1: 'P1 · urgent', p2: 'P2', p3: 'P3' };

export function minutesText(ms) {
  const m = Math.round(ms / 60000);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/// A moment in the browser's own time zone.
export function timeText(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function grantLeft(expires) {
  const s = Math.max(0, Math.round((expires - Date.now()) / 1000));
  if (s === 0) return 'running out';
  if (s < 120) return `${s} s left`;
  return `${minutesText(s * 1000)} left`;
}

export function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text == null ? '' : String(text);
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

export function facts(dl, pairs) {
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

/// One granted capability with its "Revoke" button (the approver's card and the watch page).
export function revokeRow(tag, cap, onRevoke) {
  const row = document.createElement(tag);
  const code = document.createElement('code');
  code.textContent = cap;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'revoke secondary';
  b.dataset.cap = cap;
  b.textContent = 'Revoke';
  b.addEventListener('click', () => onRevoke(cap));
  row.append(code, b);
  return row;
}

// An answered card stays, greyed and inert, until its live list drops it.
export function finished(li) {
  li.classList.add('done');
  for (const el of li.querySelectorAll('button, input, select')) el.disabled = true;
}

/// The events that end or annotate a session page's link the same way on every such page
/// (the shell's and the desktop's): denied, closed, ended, signed out, an error, and the
/// notes (left, watching). `status` is the page's status line; `what` names the channel
/// ("shell", "desktop"); `stop(text, cls)` closes the page's view, `note(text)` adds a
/// note, and `live()` says whether a request or a grant is still running (an error then
/// is only noted). Returns false for an event that is not one of these.
export function linkEvent(ev, { status, what, stop, note, live }) {
  const bad = status.classList.contains('bad');
  switch (ev.type) {
    case 'denied':
      stop(`Your request was ${ev.message}`);
      return true;
    case 'closed':
      if (!bad) {
        status.textContent = `The ${what} closed: ${ev.message}`;
        status.className = 'status done';
      }
      return true;
    case 'ended':
      stop(`The session ended: ${ev.message}`, bad ? 'bad' : 'done');
      return true;
    case 'signed-out':
      stop(ev.message);
      return true;
    case 'error':
      if (live()) note(ev.message);
      else stop(ev.message);
      return true;
    case 'left':
    case 'watching':
      note(ev.message);
      return true;
    default:
      return false;
  }
}
