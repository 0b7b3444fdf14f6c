//! The proxy's side of the relay connection that is not a channel: the control stream
//! (resizes out; the session's end, grant changes and each command's exit in) and the
//! agent's stderr streams.
//!
//! One task owns the session's control stream; SSH channels reach it through a cloneable
//! [`Link`]: they ask for resizes, learn their command's exit (the relay tells it for
//! each channel the proxy opened with `report_exit`, by the channel's stream id) and the
//! session's end, and take their command's stderr (`StderrOf` their stream), so that
//! commands running at once on one SSH connection stay apart.

use super::say;
use crate::engineer::session::Live;
use assist_net::read_msg;
use assist_proto::msg::{ChannelKind, ChannelOpen, EngineerToRelay, RelayToEngineer};
use assist_proto::session::EndReason;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A command's exit: its code, or the signal that killed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Exit {
    pub code: Option<i32>,
    pub signal: Option<String>,
}

/// One channel's stderr: the sender the stderr stream's pump clones, and the receiver its
/// SSH channel takes (whichever side comes first creates both).
struct StderrEntry {
    tx: mpsc::Sender<Bytes>,
    rx: Option<mpsc::Receiver<Bytes>>,
}

type StderrSlots = Arc<Mutex<HashMap<u64, StderrEntry>>>;

fn entry(slots: &StderrSlots, stream: u64) -> std::sync::MutexGuard<'_, HashMap<u64, StderrEntry>> {
    let mut map = slots.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(stream).or_insert_with(|| {
        let (tx, rx) = mpsc::channel(16);
        StderrEntry { tx, rx: Some(rx) }
    });
    map
}

#[derive(Clone)]
pub(super) struct Link {
    resize: mpsc::Sender<(u16, u16)>,
    ended: watch::Receiver<Option<EndReason>>,
    exits: Arc<watch::Sender<HashMap<u64, Exit>>>,
    stderr: StderrSlots,
}

impl Link {
    pub async fn resize(&self, cols: u16, rows: u16) {
        let _ = self.resize.send((cols, rows)).await;
    }

    /// The session's end, once known.
    pub fn ended(&self) -> watch::Receiver<Option<EndReason>> {
        self.ended.clone()
    }

    /// The exits told so far, by the channel's stream id.
    pub fn exits(&self) -> watch::Receiver<HashMap<u64, Exit>> {
        self.exits.subscribe()
    }

    /// Channel `stream`'s exit has been passed on.
    pub fn forget_exit(&self, stream: u64) {
        self.exits.send_modify(|m| {
            m.remove(&stream);
        });
    }

    /// The stderr of the command on channel `stream` (taken once).
    pub fn stderr_of(&self, stream: u64) -> mpsc::Receiver<Bytes> {
        entry(&self.stderr, stream)
            .get_mut(&stream)
            .and_then(|e| e.rx.take())
            .unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Channel `stream` is done: its stderr receiver closes once the stream delivering it
    /// (if any) has finished.
    pub fn stderr_done(&self, stream: u64) {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).remove(&stream);
    }
}

/// The running link; `stop` hands the session back for its finish.
pub(super) struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Live>,
    stderr_task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) -> Option<Live> {
        let _ = self.stop.send(());
        self.stderr_task.abort();
        self.task.await.ok()
    }
}

pub(super) fn spawn(mut live: Live) -> (Link, Running) {
    let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let (ended_tx, ended) = watch::channel(None);
    let (stop, mut stop_rx) = oneshot::channel::<()>();
    let stderr: StderrSlots = Arc::default();
    let exits = Arc::new(watch::Sender::new(HashMap::new()));
    let exits_tx = exits.clone();
    let mut events = live.events.take();
    // The connection is shared with the channels; only its uni streams are read here.
    let conn = live.conn.clone();
    let task = tokio::spawn(async move {
        loop {
            let event = async {
                match events.as_mut() {
                    Some(ev) => ev.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop_rx => break,
                Some((cols, rows)) = resize_rx.recv() => {
                    let _ = live.send(&EngineerToRelay::Resize { session: live.session.clone(), cols, rows }).await;
                }
                ev = event => match ev {
                    Some(Ok(RelayToEngineer::SessionEnded { reason })) => {
                        let _ = ended_tx.send(Some(reason));
                        break;
                    }
                    Some(Ok(RelayToEngineer::ChannelExited { stream, code, signal, .. })) => {
                        exits_tx.send_modify(|m| {
                            m.insert(stream, Exit { code, signal });
                        });
                    }
                    Some(Ok(RelayToEngineer::GrantChanged { change, .. })) => say(&change),
                    Some(Ok(RelayToEngineer::Error { message, .. })) => say(&message),
                    Some(Ok(_)) => {}
                    Some(Err(message)) => {
                        let _ = ended_tx.send(Some(EndReason::Failed { message }));
                        break;
                    }
                    None => {
                        let message = "relay connection lost".to_owned();
                        let _ = ended_tx.send(Some(EndReason::Failed { message }));
                        break;
                    }
                }
            }
        }
        live.events = events;
        live
    });
    let stderr_task = tokio::spawn(accept_stderr(conn, stderr.clone()));
    (Link { resize: resize_tx, ended, exits, stderr }, Running { stop, task, stderr_task })
}

async fn accept_stderr(conn: quinn::Connection, slots: StderrSlots) {
    while let Ok(mut uni) = conn.accept_uni().await {
        let slots = slots.clone();
        tokio::spawn(async move {
            let Ok(Some(ChannelOpen { channel: ChannelKind::StderrOf { stream }, .. })) =
                read_msg::<ChannelOpen, _>(&mut uni).await
            else {
                return;
            };
            let to = entry(&slots, stream).get(&stream).map(|e| e.tx.clone());
            while let Ok(Some(chunk)) = uni.read_chunk(64 * 1024, true).await {
                if let Some(to) = &to {
                    let _ = to.send(chunk.bytes).await;
                }
            }
        });
    }
}
