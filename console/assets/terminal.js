// A terminal in the page (the vendored xterm.js with its fit addon), shared by the
// engineer's shell and the approver's live view, and the WebSocket address of the
// console's own origin. It knows nothing of sessions.
import { Terminal } from '/vendor/@xterm/xterm/xterm.mjs';
import { FitAddon } from '/vendor/@xterm/addon-fit/addon-fit.mjs';

/// A terminal filling `el`, following its size. `readOnly` turns off the keyboard.
export function makeTerminal(el, { readOnly = false } = {}) {
  const term = new Terminal({
    cursorBlink: !readOnly,
    disableStdin: readOnly,
    convertEol: false,
    scrollback: 5000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  el.replaceChildren();
  term.open(el);
  const refit = () => { try { fit.fit(); } catch { /* hidden: nothing to fit */ } };
  refit();
  const observer = new ResizeObserver(refit);
  observer.observe(el);
  window.addEventListener('resize', refit);
  return {
    term,
    refit,
    dispose() {
      observer.disconnect();
      window.removeEventListener('resize', refit);
      term.dispose();
    },
  };
}

/// The console's WebSocket at `path`, on this page's origin.
export function socket(path) {
  const ws = new WebSocket(`wss://${location.host}${path}`);
  ws.binaryType = 'arraybuffer';
  return ws;
}
