// A recorded desktop channel played back on the session page: the picture through the same
// viewer as live (desktop-view.js), with play and pause, a seek bar carrying the session's
// markers (approval, the desktop opening and closing, grant changes, the end; each one a
// button that seeks there), the speed, the time ("0:42 / 3:10") and what the engineer was
// granted at that moment. The relay streams the recorded messages, paced; this page only
// asks it to play, pause, seek or change speed. Nothing is ever sent to the customer's
// desktop from here: a replay has no way there.
import { DesktopView } from './desktop-view.js';

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

/// "m:ss" (or "h:mm:ss") of milliseconds; with tenths ("0:04.2") when `tenths`.
export function clock(ms, tenths = false) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  const t = tenths ? `.${Math.floor((Math.max(0, ms) % 1000) / 100)}` : '';
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}${t}` : `${m}:${ss}${t}`;
}

const SPEEDS = [0.5, 1, 2, 4];

export class DesktopReplay {
  // Builds the player in `box` for channel `channel` of session `id` and connects.
  constructor(box, id, channel) {
    this.duration = 0;
    this.position = 0;
    this.playing = false;
    this.grants = [];
    this.seeking = false;
    // Whether the decoder was flushed to show a paused picture whole (see settle()).
    this.settled = false;
    // The relay's last word on the position, and when it came (for currentMs).
    this.told = { ms: 0, at: performance.now(), speed: 1 };
    this.root = el('section', 'replay');
    // For the page's own scripts (and the tests): the player behind the element.
    this.root.player = this;
    this.root.dataset.channel = String(channel);
    this.title = el('h3', 'replay-title', `Desktop, channel ${channel}`);
    this.screen = el('div', 'desktop replay-screen');
    this.view = new DesktopView(this.screen);
    this.play = el('button', 'rp-play', 'Play');
    this.play.type = 'button';
    this.play.disabled = true;
    this.bar = el('div', 'rp-bar');
    this.seek = el('input', 'rp-seek');
    this.seek.type = 'range';
    this.seek.min = '0';
    this.seek.max = '0';
    // Any millisecond: a fixed step would round a seek (or a marker's) away from its time,
    // by as much as a short recording lasts.
    this.seek.step = 'any';
    this.seek.value = '0';
    this.seek.setAttribute('aria-label', 'Position in the recording');
    this.marks = el('div', 'rp-marks');
    this.bar.append(this.seek, this.marks);
    this.time = el('span', 'rp-time', '0:00 / 0:00');
    const speedLabel = el('label', 'inline rp-speed-label', 'Speed ');
    this.speed = el('select', 'rp-speed');
    for (const s of SPEEDS) {
      const o = el('option', '', `${s}×`);
      o.value = String(s);
      if (s === 1) o.selected = true;
      this.speed.append(o);
    }
    speedLabel.append(this.speed);
    const controls = el('div', 'rp-controls');
    controls.append(this.play, this.bar, this.time, speedLabel);
    this.granted = el('p', 'rp-granted small');
    this.status = el('p', 'rp-status small', 'Connecting to the recording…');
    this.list = el('ol', 'rp-markers');
    this.root.append(this.title, this.screen, controls, this.granted, this.status, this.list);
    box.append(this.root);

    this.play.addEventListener('click', () => {
      if (this.playing) return this.send({ type: 'pause' });
      // A settled picture goes on from a keyframe: seek to where it stands first (at the
      // end, the relay starts again from the beginning by itself).
      if (this.settled && this.position < this.duration) this.goTo(this.position);
      this.send({ type: 'play' });
    });
    // While the thumb is dragged the time follows it; the seek is sent when it is let go.
    this.seek.addEventListener('input', () => { this.seeking = true; this.show(Number(this.seek.value)); });
    this.seek.addEventListener('change', () => { this.seeking = false; this.goTo(Number(this.seek.value)); });
    this.speed.addEventListener('change', () => this.send({ type: 'speed', speed: Number(this.speed.value) }));

    const path = `/api/v1/audit/sessions/${encodeURIComponent(id)}/channels/${channel}/desktop`;
    this.ws = new WebSocket(`wss://${location.host}${path}`);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        this.view.feed(new Uint8Array(ev.data));
        return;
      }
      this.handle(JSON.parse(ev.data));
    };
    this.ws.onclose = () => {
      this.play.disabled = true;
      if (!this.root.dataset.error) this.say('The replay’s connection closed. Open the session again to replay it.');
    };
  }

  send(v) {
    if (this.ws.readyState === 1) this.ws.send(JSON.stringify(v));
  }

  settle() {
    if (this.settled) return;
    this.view.settle();
    this.settled = true;
  }

  goTo(ms) {
    this.send({ type: 'seek', ms: Math.round(ms) });
  }

  say(text) { this.status.textContent = text; }

  handle(ev) {
    switch (ev.type) {
      case 'replay':
        this.duration = ev.duration_ms;
        this.grants = ev.grants || [];
        this.seek.max = String(this.duration);
        this.play.disabled = false;
        this.drawMarkers(ev.markers || []);
        this.say(ev.verdict === 'truncated'
          ? 'This recording was never sealed: it plays up to where it stops.'
          : 'Press Play to watch what the engineer saw. Click a marker to jump to it.');
        this.show(0);
        break;
      case 'seek':
        // What follows starts at a keyframe: decode it afresh, without waiting.
        this.view.restart();
        this.settled = false;
        this.show(ev.ms);
        break;
      case 'state':
        this.playing = ev.playing;
        this.told.speed = ev.speed;
        this.play.textContent = ev.playing ? 'Pause' : 'Play';
        this.root.dataset.playing = ev.playing ? 'yes' : 'no';
        this.show(ev.ms);
        // Paused (or a seek while paused): the messages made due came before this, so the
        // picture at this position is all given; show it whole.
        if (!ev.playing) this.settle();
        break;
      case 'position':
        this.show(ev.ms);
        break;
      case 'end':
        this.playing = false;
        this.play.textContent = 'Play again';
        this.root.dataset.playing = 'no';
        this.show(ev.ms);
        this.settle();
        this.say('The end of the recording.');
        break;
      case 'error':
      case 'refused':
      case 'signed-out':
        this.root.dataset.error = 'yes';
        this.say(ev.message);
        break;
      default:
        break;
    }
  }

  /// Where the replay is now: the relay's last position, moved on by the time since if
  /// it is playing (the relay says where it is four times a second).
  currentMs() {
    if (!this.playing) return this.told.ms;
    return Math.min(this.duration, this.told.ms + (performance.now() - this.told.at) * this.told.speed);
  }

  /// Shows position `ms`: the bar (unless it is being dragged), the time, and the grant in
  /// force then.
  show(ms) {
    this.told = { ms, at: performance.now(), speed: this.told.speed };
    this.position = ms;
    this.root.dataset.position = String(ms);
    if (!this.seeking) this.seek.value = String(ms);
    // A short recording shows tenths of a second, or every moment of it would be 0:00.
    const short = this.duration < 60000;
    this.time.textContent = `${clock(ms, short)} / ${clock(this.duration, short)}`;
    const inForce = this.grants.filter((g) => g.at_ms <= ms).pop();
    this.granted.textContent = inForce
      ? `Granted at this moment: ${inForce.granted.length ? inForce.granted.join(', ') : 'nothing'}`
      : '';
  }

  drawMarkers(markers) {
    const items = markers.map((m) => {
      const where = this.duration ? Math.min(100, (100 * m.at_ms) / this.duration) : 0;
      const tick = el('button', 'rp-mark');
      tick.type = 'button';
      tick.style.left = `${where}%`;
      tick.title = `${clock(m.at_ms)} ${m.label}`;
      tick.setAttribute('aria-label', `Jump to ${clock(m.at_ms)}: ${m.label}`);
      tick.addEventListener('click', () => this.goTo(m.at_ms));
      this.marks.append(tick);
      // The same markers as a list, readable at any width.
      const li = el('li');
      const b = el('button', 'link rp-jump', clock(m.at_ms));
      b.type = 'button';
      b.dataset.ms = String(m.at_ms);
      b.addEventListener('click', () => this.goTo(m.at_ms));
      li.append(b, document.createTextNode(` ${m.label}`));
      return li;
    });
    this.list.replaceChildren(...items);
  }

  close() {
    this.ws.onclose = null;
    this.ws.close();
    this.view.close();
    this.root.remove();
  }
}
