// A remote desktop drawn in the page: feed it the desktop messages of proto/src/desktop
// (stream info, H.264 frames, cursor shape and position), whole, as they arrive live or
// from a recording, and it decodes the frames with WebCodecs onto a canvas scaled to its
// box, with the pointer drawn over it. It also turns the page's input into the messages an
// agent takes (keys by KeyboardEvent.code, mouse in picture pixels, buttons, wheel).
//
// It sends nothing and decides nothing: the page that owns it says where messages go and
// whether input may be sent at all. The live page (desktop.js) and the session page's
// replay (desktop-replay.js, which never sends input) both draw through it.

const HEADER = 8;
export const KIND = {
  streamInfo: 1, frame: 2, cursorShape: 3, cursorPosition: 4,
  key: 16, text: 17, mouseMove: 18, mouseButton: 19, wheel: 20,
  clipboard: 32, keyframeRequest: 33,
};
const SET = 1;

/// The codec string of an H.264 stream from its SPS (profile, constraints, level), found
/// in a keyframe's Annex B bytes; a baseline default when there is none.
function avcCodec(data) {
  for (let i = 0; i + 7 < data.length; i++) {
    const three = data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1;
    if (!three) continue;
    if ((data[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(data[i + 4])}${hex(data[i + 5])}${hex(data[i + 6])}`;
    }
  }
  return 'avc1.42e01f';
}

function message(kind, flags, payload) {
  const out = new Uint8Array(HEADER + payload.length);
  const dv = new DataView(out.buffer);
  out[0] = kind;
  out[1] = flags;
  dv.setUint32(4, payload.length);
  out.set(payload, HEADER);
  return out;
}

/// Input messages, as the agent decodes them.
export const input = {
  key: (code, down) => message(KIND.key, down ? SET : 0, new TextEncoder().encode(code)),
  text: (t) => message(KIND.text, 0, new TextEncoder().encode(t)),
  move: (x, y) => {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setUint16(0, x);
    new DataView(p.buffer).setUint16(2, y);
    return message(KIND.mouseMove, 0, p);
  },
  button: (button, down) => message(KIND.mouseButton, down ? SET : 0, Uint8Array.of(button)),
  wheel: (dx, dy) => {
    const p = new Uint8Array(4);
    new DataView(p.buffer).setInt16(0, dx);
    new DataView(p.buffer).setInt16(2, dy);
    return message(KIND.wheel, 0, p);
  },
  keyframeRequest: () => message(KIND.keyframeRequest, 0, new Uint8Array(0)),
};

/// How many pictures a live view lets wait for its decoder before it drops to a keyframe.
const MAX_BEHIND = 2;

export class DesktopView {
  // box: an element to fill; onKeyframeNeeded(): called when the decoder needs a keyframe
  // (joined mid-stream, a decoding error, or, with `latest`, frames dropped).
  // latest: a live view. When the decoder falls behind (more than MAX_BEHIND pictures
  // waiting to be decoded), pictures are dropped up to the next keyframe, which is asked
  // for, rather than shown ever later: a slow page gets fewer pictures, never a growing
  // delay. A replay leaves it off: a seek's catch-up is decoded whole, on purpose.
  constructor(box, { onKeyframeNeeded = () => {}, latest = false } = {}) {
    this.box = box;
    this.onKeyframeNeeded = onKeyframeNeeded;
    this.latest = latest;
    this.skipping = false;
    this.askedAt = 0;
    this.dropped = 0;
    this.screen = document.createElement('canvas');
    this.screen.className = 'desktop-screen';
    this.pointer = document.createElement('canvas');
    this.pointer.className = 'desktop-pointer';
    box.replaceChildren(this.screen, this.pointer);
    this.ctx = this.screen.getContext('2d');
    this.pctx = this.pointer.getContext('2d');
    this.width = 0;
    this.height = 0;
    this.decoder = null;
    this.configured = false;
    this.cursor = null;
    this.at = null;
    this.frames = 0;
    this.pending = new Uint8Array(0);
    this.lastTimestamp = 0;
  }

  /// Whole messages, one or more back to back.
  feed(bytes) {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let off = 0;
    while (off + HEADER <= data.length) {
      const dv = new DataView(data.buffer, data.byteOffset + off);
      const kind = data[off];
      const flags = data[off + 1];
      const len = dv.getUint32(4);
      if (off + HEADER + len > data.length) break;
      this.handle(kind, flags, data.subarray(off + HEADER, off + HEADER + len));
      off += HEADER + len;
    }
  }

  handle(kind, flags, p) {
    const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
    switch (kind) {
      case KIND.streamInfo:
        this.resize(dv.getUint16(1), dv.getUint16(3));
        break;
      case KIND.frame:
        this.frame(flags & SET, Number(dv.getBigUint64(0)), p.subarray(8));
        break;
      case KIND.cursorShape: {
        const w = dv.getUint16(0);
        const h = dv.getUint16(2);
        const c = document.createElement('canvas');
        c.width = w;
        c.height = h;
        if (w && h) c.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(p.subarray(8)), w, h), 0, 0);
        this.cursor = { image: c, hotX: dv.getUint16(4), hotY: dv.getUint16(6) };
        this.drawPointer();
        break;
      }
      case KIND.cursorPosition:
        this.at = { x: dv.getInt32(0), y: dv.getInt32(4) };
        this.drawPointer();
        break;
      default:
        break;
    }
  }

  resize(width, height) {
    this.width = width;
    this.height = height;
    for (const c of [this.screen, this.pointer]) {
      c.width = width;
      c.height = height;
    }
    this.box.style.aspectRatio = `${width} / ${height}`;
    // The picture fits the window: as wide as the page allows and no taller than it.
    this.box.style.setProperty('--aspect', String(width / height));
    // A new size starts with a keyframe: configure again from it.
    this.configured = false;
    this.drawPointer();
  }

  frame(key, timestamp, data) {
    if (this.latest && this.configured && !key) {
      if (!this.skipping && this.decoder && this.decoder.decodeQueueSize > MAX_BEHIND) this.skipping = true;
      if (this.skipping) {
        this.dropped += 1;
        this.box.dataset.dropped = String(this.dropped);
        // Asked again if the keyframe has not come within a second.
        const now = performance.now();
        if (now - this.askedAt > 1000) {
          this.askedAt = now;
          this.onKeyframeNeeded();
        }
        return;
      }
    }
    if (key) this.skipping = false;
    if (!this.configured) {
      if (!key) {
        this.onKeyframeNeeded();
        return;
      }
      this.configure(avcCodec(data));
    }
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp, data }));
    } catch (e) {
      this.reset(e);
    }
  }

  configure(codec) {
    if (!this.decoder || this.decoder.state === 'closed') {
      this.decoder = new VideoDecoder({
        output: (f) => {
          this.ctx.drawImage(f, 0, 0, this.width, this.height);
          f.close();
          this.frames += 1;
          this.box.dataset.frames = String(this.frames);
        },
        error: (e) => this.reset(e),
      });
    }
    this.decoder.configure({ codec, optimizeForLatency: true });
    this.configured = true;
  }

  reset(e) {
    console.warn('desktop decoder:', e);
    this.configured = false;
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
    this.onKeyframeNeeded();
  }

  drawPointer() {
    this.pctx.clearRect(0, 0, this.pointer.width, this.pointer.height);
    if (this.cursor && this.at) {
      this.pctx.drawImage(this.cursor.image, this.at.x - this.cursor.hotX, this.at.y - this.cursor.hotY);
    }
  }

  /// Where a point of the page falls in picture pixels, or null outside the picture.
  toRemote(clientX, clientY) {
    const r = this.screen.getBoundingClientRect();
    if (!this.width || !r.width || !r.height) return null;
    const x = Math.floor(((clientX - r.left) / r.width) * this.width);
    const y = Math.floor(((clientY - r.top) / r.height) * this.height);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return null;
    return { x, y };
  }

  /// Forgets the picture being decoded (a replay's seek): what is queued in the decoder is
  /// dropped and the next stream info and keyframe start afresh; the picture shown stays
  /// until then.
  restart() {
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
    this.configured = false;
  }

  /// Shows the last picture given even if none follows (a paused or ended replay): the
  /// decoder gives out what it still holds. It then needs a keyframe, so what follows
  /// must start at one (a replay seeks before it plays on).
  settle() {
    if (this.decoder && this.decoder.state === 'configured') this.decoder.flush().catch(() => {});
    this.configured = false;
  }

  close() {
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
  }
}
