// The auditor's pages (everyone may open them; the relay scopes what each sees): the
// sessions list with filters and paging, and one session with its verified recording, a
// replay in the page (terminals with the vendored player, desktops with desktop-replay.js),
// its channels (each direction's raw bytes to download), grant
// revisions, file transfers and audit timeline.
import { call, ApiError } from './api.js';
import { $, say, fail, timeText, cell, facts } from './common.js';
import { register } from './pages.js';
import { DesktopReplay } from './desktop-replay.js';

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
      cell(tr, String(s.priority).toUpperCase());
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
// One player per recorded desktop channel of the session shown.
let desktops = [];

function showDesktops(id, list, recording) {
  for (const d of desktops) d.close();
  desktops = [];
  const playable = recording.result === 'valid' || recording.result === 'truncated';
  if (!playable) return;
  for (const c of list.filter((ch) => ch.kind === 'desktop' && ch.bytes_out > 0)) {
    desktops.push(new DesktopReplay($('sp-desktops'), id, c.channel));
  }
}

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

function rawLink(id, c, direction, bytes) {
  const a = document.createElement('a');
  a.href = `/api/v1/audit/sessions/${encodeURIComponent(id)}/channels/${c.channel}/${direction}`;
  a.download = `${id}-channel-${c.channel}-${direction}.bin`;
  a.className = `raw-${direction}`;
  a.textContent = direction === 'out' ? `from the agent (${bytes} B)` : `to the agent (${bytes} B)`;
  return a;
}

async function showChannels(id, recording) {
  const body = $('sp-channels').querySelector('tbody');
  let list;
  try {
    list = await call('GET', `/api/v1/audit/sessions/${encodeURIComponent(id)}/channels`);
  } catch (e) { return fail(e); }
  if (document.body.dataset.session !== id) return;
  body.replaceChildren(...list.map((c) => {
    const tr = document.createElement('tr');
    tr.dataset.channel = c.channel;
    cell(tr, c.channel);
    cell(tr, c.kind);
    cell(tr, c.what);
    cell(tr, timeText(c.opened_at));
    cell(tr, c.closed_at ? timeText(c.closed_at) : 'still open');
    cell(tr, c.bytes_out);
    cell(tr, c.bytes_in);
    const td = cell(tr, '');
    if (c.bytes_out) td.append(rawLink(id, c, 'out', c.bytes_out));
    if (c.bytes_out && c.bytes_in) td.append(document.createTextNode(' · '));
    if (c.bytes_in) td.append(rawLink(id, c, 'in', c.bytes_in));
    return tr;
  }));
  $('sp-channels').hidden = list.length === 0;
  $('sp-no-channels').hidden = list.length > 0;
  // The terminal player only where a terminal was recorded.
  $('sp-player').hidden = !list.some((c) => c.kind === 'shell' || c.kind === 'stderr');
  // Nor a terminal download: a session of transfers only has no terminal to play.
  $('sp-cast').parentElement.hidden = $('sp-player').hidden;
  const playable = recording.result === 'valid' || recording.result === 'truncated';
  if (playable && $('sp-player').hidden && !list.some((c) => c.kind === 'desktop' && c.bytes_out > 0)) {
    $('sp-no-replay').textContent = 'Nothing to replay: this session recorded no terminal or desktop. What it did is in the transfers and channels below.';
    $('sp-no-replay').hidden = false;
  }
  showDesktops(id, list, recording);
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
      for (const t of ['sp-grants', 'sp-transfers', 'sp-channels']) $(t).querySelector('tbody').replaceChildren();
      $('sp-events').replaceChildren();
      $('sp-body').hidden = true;
      showDesktops(id, [], { result: 'missing' });
      return;
    }
    return fail(e);
  }
  const s = d.session;
  document.body.dataset.session = s.id;
  $('sp-title').textContent = `${s.engineer} on ${s.agent} · ${s.ticket}`;
  const base = `/api/v1/audit/sessions/${encodeURIComponent(s.id)}`;
  $('sp-bundle').href = `${base}/bundle`;
  $('sp-cast').href = `${base}/asciicast`;
  $('sp-cast').download = `${s.id}.cast`;
  showChannels(s.id, d.recording);
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

// Leaving the session page stops its replays (the relay stops streaming them).
window.addEventListener('hashchange', () => {
  if (!location.hash.startsWith('#session/')) showDesktops('', [], { result: 'missing' });
});

register({
  name: 'sessions', el: 'review', tab: 'Sessions', hash: '#sessions', order: 50,
  allowed: () => true,
  enter: () => loadSessions(),
});

register({
  name: 'session', el: 'session-page', prefix: '#session/', under: 'sessions',
  allowed: () => true,
  enter: (_me, id) => loadSession(id),
  stop: () => showDesktops('', [], { result: 'missing' }),
});
