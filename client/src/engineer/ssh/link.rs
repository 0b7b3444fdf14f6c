//! The proxy's side of the relay connection that is not a channel: the control stream
//! (resizes out; the session's end and grant changes in) and the agent's stderr streams.
//!
//! One task owns the session's control stream; SSH channels reach it through a cloneable
//! [`Link`]: they ask for resizes, learn the session's end (whose reason carries a
//! command's exit status), and take the agent's stderr for the command running now.

use super::say;
use crate::engineer::session::Live;
use assist_net::read_msg;
use assist_proto::msg::{ChannelKind, ChannelOpen, EngineerToRelay, RelayToEngineer};
use assist_proto::session::EndReason;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

type StderrSlot = Arc<Mutex<Option<mpsc::Sender<Bytes>>>>;

#[derive(Clone)]
pub(super) struct Link {
    resize: mpsc::Sender<(u16, u16)>,
    ended: watch::Receiver<Option<EndReason>>,
    stderr: StderrSlot,
    /// Stderr streams accepted and not yet finished.
    stderr_open: watch::Receiver<usize>,
}

impl Link {
    pub async fn resize(&self, cols: u16, rows: u16) {
        let _ = self.resize.send((cols, rows)).await;
    }

    /// The session's end, once known.
    pub fn ended(&self) -> watch::Receiver<Option<EndReason>> {
        self.ended.clone()
    }

    /// How many stderr streams are still delivering: a command's last stderr may come
    /// after the session's end, which travels on another stream.
    pub fn stderr_open(&self) -> watch::Receiver<usize> {
        self.stderr_open.clone()
    }

    /// The agent's stderr from now on (for the command this channel runs).
    pub fn stderr(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(16);
        *self.stderr.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
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
    let stderr: StderrSlot = Arc::default();
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
    let (open_tx, stderr_open) = watch::channel(0usize);
    let stderr_task = tokio::spawn(accept_stderr(conn, stderr.clone(), Arc::new(open_tx)));
    (Link { resize: resize_tx, ended, stderr, stderr_open }, Running { stop, task, stderr_task })
}

async fn accept_stderr(conn: quinn::Connection, slot: StderrSlot, open: Arc<watch::Sender<usize>>) {
    while let Ok(mut uni) = conn.accept_uni().await {
        let slot = slot.clone();
        let open = open.clone();
        open.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            if matches!(
                read_msg::<ChannelOpen, _>(&mut uni).await,
                Ok(Some(ChannelOpen { channel: ChannelKind::Stderr, .. }))
            ) {
                let to = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
                while let Ok(Some(chunk)) = uni.read_chunk(64 * 1024, true).await {
                    if let Some(to) = &to {
                        let _ = to.send(chunk.bytes).await;
                    }
                }
            }
            open.send_modify(|n| *n = n.saturating_sub(1));
        });
    }
}
