//! Watching a live session read-only (approvers of the agent's organisation, admins).
//!
//! - Every live session has a [`Screen`]: the terminal output of its shell channels as the
//!   engineer received it, kept from the last full-screen clear (`ESC [ 2 J`, `ESC c`) and
//!   at most [`TAIL`] bytes, so a watcher starts from the current screen rather than an
//!   empty one; and a broadcast of what follows. A shell channel's output sink is wrapped
//!   in [`Mirrored`] by whichever transport splices it (QUIC or the browser).
//! - [`Relay::watch`] checks who may watch, audits `session.watch_started`, tells the
//!   engineer ("bob (acme) is watching") and hands back a [`Watching`]: the screen so far
//!   and the output from then on, nothing missed and nothing twice. Dropping it audits
//!   `session.watch_stopped` and tells the engineer.
//!
//! A watcher gets output only: there is no input direction to a watch, so nothing a
//! watcher types can reach the session. This module does no I/O; the mirror copies
//! references to the same buffers the splice forwards.

use super::peer::{ChunkSink, PeerFuture, StreamGone};
use super::policy::Principal;
use super::*;
use bytes::Bytes;
use std::collections::VecDeque;
use tokio::sync::broadcast;

/// Most bytes of output a session keeps for a watcher who joins.
pub(crate) const TAIL: usize = 256 * 1024;
/// Chunks a watcher may fall behind before it is drawn afresh ([`Watching::catch_up`]).
const LAG: usize = 1024;
/// What a watcher that fell behind is sent before the current screen: the cursor home and
/// the screen cleared.
const REDRAW: &[u8] = b"\x1b[H\x1b[2J";

/// A session's terminal output, for watchers.
pub(crate) struct Screen {
    tail: Mutex<Tail>,
    live: broadcast::Sender<Bytes>,
}

#[derive(Default)]
struct Tail {
    chunks: VecDeque<Bytes>,
    len: usize,
}

/// Where in `chunk` the output after the last full-screen clear starts, if it has one.
fn after_clear(chunk: &[u8]) -> Option<usize> {
    let clears: [&[u8]; 3] = [b"\x1b[2J", b"\x1b[3J", b"\x1bc"];
    clears.iter().filter_map(|pat| chunk.windows(pat.len()).rposition(|w| w == *pat)).max()
}

impl Default for Screen {
    fn default() -> Self {
        Self { tail: Mutex::default(), live: broadcast::channel(LAG).0 }
    }
}

impl Screen {
    /// Notes output the engineer is sent.
    pub(crate) fn push(&self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        let mut tail = self.tail.lock().expect("screen lock");
        if let Some(at) = after_clear(chunk) {
            tail.chunks.clear();
            tail.len = 0;
            let kept = chunk.slice(at..);
            tail.len += kept.len();
            tail.chunks.push_back(kept);
        } else {
            tail.len += chunk.len();
            tail.chunks.push_back(chunk.clone());
        }
        let tail = &mut *tail;
        while tail.len > TAIL {
            let over = tail.len - TAIL;
            let Some(front) = tail.chunks.front_mut() else { break };
            if front.len() <= over {
                tail.len -= front.len();
                tail.chunks.pop_front();
            } else {
                *front = front.slice(over..);
                tail.len -= over;
            }
        }
        // Sent under the lock, so a watcher joining sees each chunk exactly once.
        let _ = self.live.send(chunk.clone());
    }

    /// The screen so far and everything after it.
    fn join(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let tail = self.tail.lock().expect("screen lock");
        (tail.chunks.iter().cloned().collect(), self.live.subscribe())
    }

    /// As [`Screen::join`], the screen drawn afresh (cursor home, cleared, then the screen):
    /// for a watcher that fell behind, so what it skipped leaves nothing half-drawn.
    fn redraw(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let (tail, live) = self.join();
        (std::iter::once(Bytes::from_static(REDRAW)).chain(tail).collect(), live)
    }
}

/// A shell channel's output sink that also shows its output to the session's watchers.
pub(crate) struct Mirrored<W> {
    inner: W,
    screen: Arc<Screen>,
}

impl<W: ChunkSink> ChunkSink for Mirrored<W> {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        for b in bufs.iter() {
            self.screen.push(b);
        }
        self.inner.write_all_chunks(bufs)
    }
    fn finish(&mut self) {
        self.inner.finish();
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
}

impl LiveSession {
    /// `sink`, for a shell channel's output, with the session's watchers shown what it is
    /// sent.
    pub(crate) fn mirror<W: ChunkSink>(&self, sink: W) -> Mirrored<W> {
        Mirrored { inner: sink, screen: self.screen.clone() }
    }
}

/// A watcher's view of a live session. Dropping it is leaving.
pub(crate) struct Watching {
    pub info: SessionInfo,
    /// The screen when the watcher joined.
    pub screen: Vec<Bytes>,
    /// Output from then on.
    pub live: broadcast::Receiver<Bytes>,
    /// Turns true when the session ends.
    pub ended: watch::Receiver<bool>,
    source: Arc<Screen>,
    left: Option<Left>,
}

impl Watching {
    /// For a watcher whose `live` lagged (it skipped output): the screen as it is now,
    /// drawn afresh, and `live` from then on, so it again sees exactly what the engineer
    /// sees rather than a screen with pieces missing.
    pub(crate) fn catch_up(&mut self) -> Vec<Bytes> {
        let (screen, live) = self.source.redraw();
        self.live = live;
        screen
    }
}

struct Left {
    relay: std::sync::Weak<Relay>,
    session: Arc<LiveSession>,
    who: Principal,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let Some(Left { relay, session, who }) = self.left.take() else { return };
        let Some(relay) = relay.upgrade() else { return };
        let info = self.info.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { relay.watch_event(&session, &info, &who, false).await });
        }
    }
}

impl Relay {
    /// Starts `who` watching live session `id` (see the module docs). One who may not
    /// watch it is told what they would be told if it did not exist, and it is audited.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        who: &Principal,
        id: &SessionId,
    ) -> Result<Watching, Refusal> {
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let Some(s) = self.session(id) else {
            // Its screen is in the memory of the relay holding it: the watcher goes there.
            if let Some(there) = self.holder_elsewhere(who, id).await {
                return Err(there);
            }
            let why = "no such session";
            return Err(self
                .refuse_access(who, "session.watch", id, None, why, (not_found(), not_found()))
                .await);
        };
        let info = s.core.lock().await.info();
        if !who.may_watch(&info) {
            let why = "may not watch this session";
            return Err(self
                .refuse_access(who, "session.watch", id, Some(&info), why, (not_found(), not_found()))
                .await);
        }
        if !matches!(info.state, SessionState::Approved | SessionState::Active) {
            return Err(Refusal::new(ErrorCode::Conflict, format!("session {id} is not live yet")));
        }
        let source = s.screen.clone();
        let (screen, live) = source.join();
        let ended = s.ended.subscribe();
        self.watch_event(&s, &info, who, true).await;
        let left = Left { relay: Arc::downgrade(self), session: s, who: who.clone() };
        Ok(Watching { info, screen, live, ended, source, left: Some(left) })
    }

    /// Audits a watcher joining or leaving and tells the engineer.
    async fn watch_event(&self, s: &LiveSession, info: &SessionInfo, who: &Principal, watching: bool) {
        let action = if watching { Action::WatchStarted } else { Action::WatchStopped };
        let event = session_event(who.user.as_str(), action, info).detail(json!({ "watcher_org": who.org }));
        let _ = self.audit(event).await;
        let msg = RelayToEngineer::Watching {
            session: info.id.clone(),
            watcher: who.user.clone(),
            org: who.org.clone(),
            watching,
        };
        let _ = s.engineer.tx.send(msg).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunks: &[Bytes]) -> String {
        chunks.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn the_screen_starts_at_the_last_clear_and_is_bounded() {
        let screen = Screen::default();
        screen.push(&Bytes::from_static(b"old prompt$ ls\r\n"));
        screen.push(&Bytes::from_static(b"junk\x1b[H\x1b[2Jtop screen"));
        screen.push(&Bytes::from_static(b" more"));
        let (tail, _) = screen.join();
        assert_eq!(text(&tail), "\x1b[2Jtop screen more");
        let big = Bytes::from(vec![b'x'; TAIL + 10]);
        screen.push(&big);
        let (tail, _) = screen.join();
        assert_eq!(tail.iter().map(Bytes::len).sum::<usize>(), TAIL);
    }

    #[test]
    fn a_watcher_gets_the_screen_then_everything_after_it_once() {
        let screen = Screen::default();
        screen.push(&Bytes::from_static(b"before "));
        let (tail, mut live) = screen.join();
        screen.push(&Bytes::from_static(b"after"));
        assert_eq!(text(&tail), "before ");
        assert_eq!(live.try_recv().expect("the next chunk"), Bytes::from_static(b"after"));
        assert!(live.try_recv().is_err());
    }

    #[test]
    fn a_watcher_that_fell_behind_is_drawn_afresh_and_then_misses_nothing() {
        let screen = Screen::default();
        screen.push(&Bytes::from_static(b"old\x1b[2Jprompt$ "));
        let (first, mut live) = screen.join();
        assert_eq!(first, vec![Bytes::from_static(b"\x1b[2Jprompt$ ")]);
        for i in 0..LAG + 10 {
            screen.push(&Bytes::from(format!("line {i}\r\n")));
        }
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
        let (again, mut live) = screen.redraw();
        assert_eq!(again[0], Bytes::from_static(REDRAW));
        let drawn: Vec<u8> = again[1..].iter().flat_map(|b| b.to_vec()).collect();
        assert!(drawn.starts_with(b"\x1b[2Jprompt$ line 0\r\n"), "the screen since its last clear");
        assert!(drawn.ends_with(format!("line {}\r\n", LAG + 9).as_bytes()));
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing twice");
        screen.push(&Bytes::from_static(b"next"));
        assert_eq!(live.try_recv().unwrap(), Bytes::from_static(b"next"));
    }
}
