// The desktop page's clipboard panel: text the engineer sends is put on the customer's
// clipboard, and what the customer copies (after the clipboard was shared) appears here
// with a Copy button. It travels on the desktop's socket as the clipboard messages of
// proto/src/desktop, on a channel of its own that the relay opens only when the grant holds
// `clipboard`.
//
// It decides nothing: the relay and the agent check the grant and the size of every
// message whatever the page sends; the panel only says what happened, in words.
import { $ } from './common.js';
import { KIND } from './desktop-view.js';

/// The most bytes of text one clipboard message carries (proto's MAX_CLIPBOARD).
export const MAX_CLIPBOARD = 64 * 1024;
const HEADER = 8;
const NOT_GRANTED = 'Not shared: the clipboard is not granted, so nothing is sent or received.';

/// Whether a message from the relay is the clipboard's.
export function isClipboard(bytes) {
  return bytes.length >= HEADER && bytes[0] === KIND.clipboard;
}

/// A clipboard message carrying `text`, however long (the relay refuses one over the cap).
export function clipboardMessage(text) {
  const payload = new TextEncoder().encode(text);
  const out = new Uint8Array(HEADER + payload.length);
  out[0] = KIND.clipboard;
  new DataView(out.buffer).setUint32(4, payload.length);
  out.set(payload, HEADER);
  return out;
}

function kib(n) {
  return `${Math.ceil(n / 1024)} KiB`;
}

export class ClipboardPanel {
  /// `send(bytes)` puts a message on the desktop's socket.
  constructor(send) {
    this.send = send;
    this.shared = false;
    // Whether the grant holds `clipboard`, as far as the page was told.
    this.allowed = true;
    $('dk-clip-send').onclick = () => this.sendText();
    $('dk-clip-copy').onclick = () => this.copy();
  }

  /// A new request: shown only if it asks for the clipboard.
  reset(asked) {
    this.shared = false;
    this.allowed = true;
    $('dk-clip').hidden = !asked;
    $('dk-clip-in').textContent = '';
    $('dk-clip-in').dataset.empty = 'yes';
    $('dk-clip-note').textContent = '';
    $('dk-clip-copy').disabled = true;
    this.show('The clipboard is shared once the request is approved with it.');
  }

  show(text) {
    $('dk-clip-status').textContent = text;
    $('dk-clip').dataset.shared = this.shared ? 'yes' : 'no';
    $('dk-clip-send').disabled = !this.shared;
  }

  /// The session ended: nothing more is sent.
  ended() {
    if (!this.shared) return;
    this.shared = false;
    this.show('Not shared: the session ended.');
  }

  /// What was granted: without `clipboard` the panel says so.
  granted(list) {
    this.allowed = list.includes('clipboard');
    if (this.allowed) {
      $('dk-clip').hidden = false;
    } else if (!$('dk-clip').hidden) {
      this.shared = false;
      this.show(NOT_GRANTED);
    }
  }

  /// A `clipboard` event from the relay: open, closed, refused.
  event(ev) {
    $('dk-clip').hidden = false;
    if (ev.state === 'open') {
      this.shared = true;
      this.show('Shared. What you send is put on the customer’s clipboard; what they copy appears below. Everything is recorded.');
    } else {
      this.shared = false;
      this.show(this.allowed ? `Not shared: ${ev.message}.` : NOT_GRANTED);
    }
    $('dk-clip').dataset.state = ev.state;
  }

  /// The customer's clipboard text, as the agent sent it.
  received(bytes) {
    const text = new TextDecoder().decode(bytes.subarray(HEADER));
    $('dk-clip-in').textContent = text;
    $('dk-clip-in').dataset.empty = text ? 'no' : 'yes';
    $('dk-clip-copy').disabled = !text;
  }

  sendText() {
    const text = $('dk-clip-out').value;
    const size = new TextEncoder().encode(text).length;
    if (size > MAX_CLIPBOARD) {
      $('dk-clip-note').textContent = `Too long for the clipboard: ${kib(size)}, at most ${kib(MAX_CLIPBOARD)}. Nothing was sent.`;
      return;
    }
    if (!this.shared) {
      $('dk-clip-note').textContent = 'The clipboard is not shared: nothing was sent.';
      return;
    }
    this.send(clipboardMessage(text));
    $('dk-clip-note').textContent = `Sent (${text.length} characters): the customer can paste it now.`;
  }

  async copy() {
    const text = $('dk-clip-in').textContent;
    try {
      await navigator.clipboard.writeText(text);
      $('dk-clip-note').textContent = 'Copied to your clipboard.';
    } catch {
      // A browser that does not let the page write: select it for the engineer to copy.
      const range = document.createRange();
      range.selectNodeContents($('dk-clip-in'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $('dk-clip-note').textContent = 'Selected: press Ctrl+C (or ⌘C) to copy it.';
    }
  }
}
