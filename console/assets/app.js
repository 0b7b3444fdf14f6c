// The console's entry point: signing in (password, then a code or the enrolment of an
// authenticator with its recovery codes) and signing out. The pages themselves live in
// their own modules, which register with pages.js; importing them here is what puts them
// in the console.
import { call, ApiError } from './api.js';
import { $, say, fail, whenSignedOut } from './common.js';
import { signedIn, signedOut as pagesSignedOut } from './pages.js';
import './approvals.js';
import './review.js';
import './admin.js';
import './admin-people.js';
import './admin-agents.js';
import './admin-hooks.js';
import './auditlog.js';
import './engineer.js';
import './shell.js';
import './desktop.js';
import './watch.js';

const screens = ['signin', 'code', 'enrol', 'recovery', 'home'];

function show(id) {
  for (const s of screens) $(s).hidden = s !== id;
  document.body.dataset.screen = id;
  const first = $(id).querySelector('input');
  if (first) first.focus();
}

function signedOut(text) {
  pagesSignedOut();
  $('who').hidden = true;
  $('logout').hidden = true;
  show('signin');
  say(text || '');
}
whenSignedOut(signedOut);

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
  show('home');
  signedIn(me);
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

route();
