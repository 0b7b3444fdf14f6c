// Files beside the engineer's terminal, within what the grant allows: the granted folders
// to look into, a download (its SHA-256 computed here and compared with the relay's and
// the agent's report), and an upload into a folder granted for writing (progress, the
// page's SHA-256 sent with it; the file is put in place only if every digest agrees).
// Every transfer is one file channel of the session, recorded and audited as `assist cp`.
// Used by shell.js; not a page of its own.
import { $ } from './common.js';

// The page hashes a file whole before it is sent or kept: bigger ones go by `assist cp`.
const MAX_IN_PAGE = 512 * 1024 * 1024;

let session = null;
let readRoots = [];
let writeRoots = [];
let shown = null;

const enc = encodeURIComponent;

function rootsOf(granted, kind) {
  return granted.filter((c) => c.startsWith(`${kind}:`)).flatMap((c) => c.slice(kind.length + 1).split(','));
}

function sizeText(n) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

async function sha256(buf) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function errorOf(res) {
  try { return (await res.json()).error || `The relay answered ${res.status}.`; } catch { return `The relay answered ${res.status}.`; }
}

function note(text, cls = '') {
  const li = document.createElement('li');
  li.textContent = text;
  li.className = cls;
  $('fl-done').prepend(li);
  return li;
}

function button(text, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

/// Shows the files panel for `id` with what `granted` allows (hidden if nothing).
export function showFiles(id, granted) {
  session = id;
  readRoots = rootsOf(granted, 'files.read');
  writeRoots = rootsOf(granted, 'files.write');
  $('sh-files').hidden = readRoots.length === 0 && writeRoots.length === 0;
  const roots = $('fl-roots');
  roots.replaceChildren(...readRoots.map((r) => button(r, 'secondary root', () => list(r))));
  $('fl-upload').hidden = writeRoots.length === 0;
  $('fl-dir').replaceChildren(...writeRoots.map((r) => new Option(r, r)));
  if (shown && !readRoots.some((r) => within(shown, r))) {
    shown = null;
    $('fl-list').replaceChildren();
    $('fl-where').textContent = '';
  }
}

/// The session is over, or the page closed its terminal: no more transfers from here.
export function hideFiles() {
  session = null;
  $('sh-files').hidden = true;
}

function within(path, root) {
  return root === '/' || path === root || path.startsWith(`${root}/`);
}

function join(dir, name) {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

async function list(path) {
  const at = session;
  $('fl-where').textContent = `Looking into ${path}…`;
  const res = await fetch(`/api/v1/sessions/${enc(at)}/files?path=${enc(path)}`, { credentials: 'same-origin' });
  if (at !== session) return;
  if (!res.ok) {
    $('fl-where').textContent = `${path}: ${await errorOf(res)}`;
    return;
  }
  const data = await res.json();
  shown = path;
  $('fl-where').textContent = path;
  const items = [];
  const up = path.slice(0, path.lastIndexOf('/')) || '/';
  if (readRoots.some((r) => path !== r && within(up, r))) {
    const li = document.createElement('li');
    li.append(button('↑ Up one folder', 'secondary', () => list(up)));
    items.push(li);
  }
  const entries = data.entries.filter((e) => e.name !== '').sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const li = document.createElement('li');
    li.dataset.name = e.name;
    const full = join(path, e.name);
    if (e.kind === 'dir') {
      li.append(button(`${e.name}/`, 'secondary dir', () => list(full)));
    } else {
      const name = document.createElement('span');
      name.textContent = e.name;
      const size = document.createElement('span');
      size.className = 'small';
      size.textContent = ` ${sizeText(e.size)} `;
      li.append(name, size);
      if (e.kind === 'file') li.append(button('Download', 'download', () => download(full, e.name)));
    }
    items.push(li);
  }
  if (entries.length === 0) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'This folder is empty.';
    items.push(li);
  }
  $('fl-list').replaceChildren(...items);
}

async function download(path, name) {
  const at = session;
  const line = note(`Downloading ${path}…`);
  const res = await fetch(`/api/v1/sessions/${enc(at)}/files/download?path=${enc(path)}`, { credentials: 'same-origin' });
  if (!res.ok) {
    line.textContent = `${path}: ${await errorOf(res)}`;
    line.className = 'bad';
    return;
  }
  const total = Number(res.headers.get('Content-Length')) || 0;
  const reader = res.body.getReader();
  const parts = [];
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      got += value.length;
      line.textContent = `Downloading ${path}: ${sizeText(got)} of ${sizeText(total)}`;
    }
  } catch {
    line.textContent = `${path}: the download broke off after ${sizeText(got)}; nothing was kept.`;
    line.className = 'bad';
    return;
  }
  const blob = new Blob(parts);
  const mine = await sha256(await blob.arrayBuffer());
  // The agent's report was audited before the download's end reached us.
  const tr = await fetch(`/api/v1/sessions/${enc(at)}/files/transfers`, { credentials: 'same-origin' });
  const reports = tr.ok ? await tr.json() : [];
  const report = reports.reverse().find((t) => t.direction === 'download' && t.sha256_engineer === mine);
  const agrees = report && report.ok && report.sha256_agent === mine;
  line.dataset.sha256 = mine;
  if (!agrees) {
    line.textContent = `${path}: SHA-256 ${mine} does not match the agent's report; the file was not saved.`;
    line.className = 'bad';
    return;
  }
  line.textContent = `${path}: ${sizeText(got)}, SHA-256 ${mine}, the same at the agent. Saved as ${name}.`;
  line.className = 'ok transfer';
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

async function upload(ev) {
  ev.preventDefault();
  const at = session;
  const file = $('fl-file').files[0];
  const dir = $('fl-dir').value;
  if (!file || !dir) return;
  const path = join(dir, file.name);
  if (file.size > MAX_IN_PAGE) {
    note(`${file.name} is larger than ${sizeText(MAX_IN_PAGE)}: use assist cp for it.`, 'bad');
    return;
  }
  const line = note(`Reading ${file.name}…`);
  const buf = await file.arrayBuffer();
  const mine = await sha256(buf);
  const q = new URLSearchParams({ dir, name: file.name, size: String(file.size), sha256: mine });
  if ($('fl-replace').checked) q.set('replace', 'true');
  const bar = $('fl-progress');
  bar.hidden = false;
  bar.value = 0;
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `/api/v1/sessions/${enc(at)}/files/upload?${q}`);
  xhr.setRequestHeader('Content-Type', 'application/octet-stream');
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      bar.value = e.loaded / e.total;
      line.textContent = `Uploading ${path}: ${sizeText(e.loaded)} of ${sizeText(e.total)}`;
    }
  };
  xhr.onerror = () => {
    bar.hidden = true;
    line.textContent = `${path}: the upload broke off; the file was not replaced.`;
    line.className = 'bad';
  };
  xhr.onload = () => {
    bar.hidden = true;
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch { data = null; }
    if (xhr.status !== 200 || !data || data.sha256 !== mine) {
      line.textContent = `${path}: ${(data && data.error) || `the relay answered ${xhr.status}`}`;
      line.className = 'bad';
      return;
    }
    line.dataset.sha256 = mine;
    line.textContent = `${data.path}: ${sizeText(data.size)} uploaded, SHA-256 ${mine}, the same at the relay and the agent.`;
    line.className = 'ok transfer';
    $('fl-file').value = '';
    if (shown && at === session && (shown === dir)) list(shown);
  };
  xhr.send(buf);
}

$('fl-upload').addEventListener('submit', upload);
