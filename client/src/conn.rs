//! Reaching the relay: address resolution, pinned connection, and a request/response
//! helper for the control stream.
//!
//! Every connection opened here is also remembered process-wide, so that a client
//! interrupted by a signal can tell the relay before it exits ([`interrupt_all`]): the
//! relay then ends its sessions at once, as interrupted, instead of after the idle timeout.

use assist_certs::Fingerprint;
use assist_net::{ClientIdentity, read_msg, write_msg};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Connections to relays opened by this process (closed ones are harmless to keep).
static OPEN: Mutex<Vec<Connection>> = Mutex::new(Vec::new());
/// Told when this process opens its first connection to a relay.
static FIRST: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves once this process has opened a connection to a relay.
pub async fn first_opened() {
    let notified = FIRST.notified();
    if OPEN.lock().expect("open connections lock").is_empty() {
        notified.await;
    }
}

/// Closes every connection this process opened with [`assist_net::codes::INTERRUPTED`]
/// and waits (at most a second in all) until the relays have been told.
pub async fn interrupt_all() {
    let open = std::mem::take(&mut *OPEN.lock().expect("open connections lock"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    for conn in &open {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assist_net::close_and_flush(conn, assist_net::codes::INTERRUPTED, b"interrupted", left).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot resolve relay address {addr:?}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error(transparent)]
    Connect(#[from] assist_net::ConnectError),
    #[error("lost the connection to the relay: {0}")]
    Lost(String),
    #[error("the relay closed the conversation without an answer")]
    NoAnswer,
}

/// Resolves `HOST:PORT` (a port is required; the relay's default is 4433).
pub async fn resolve(addr: &str) -> Result<SocketAddr, ConnError> {
    let with_port = if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        addr.to_owned()
    } else {
        format!("{addr}:4433")
    };
    let mut found = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| ConnError::Resolve { addr: addr.to_owned(), reason: e.to_string() })?;
    found
        .next()
        .ok_or_else(|| ConnError::Resolve { addr: addr.to_owned(), reason: "no address found".into() })
}

/// An open connection to the relay, with its endpoint kept alive alongside.
#[derive(Debug)]
pub struct RelayConn {
    pub endpoint: Endpoint,
    pub conn: Connection,
}

impl RelayConn {
    pub async fn open(
        addr: SocketAddr,
        ca: Fingerprint,
        identity: Option<ClientIdentity>,
    ) -> Result<Self, ConnError> {
        let endpoint = assist_net::client_endpoint(addr)?;
        let conn = assist_net::connect(&endpoint, addr, ca, identity).await?;
        let mut open = OPEN.lock().expect("open connections lock");
        open.retain(|c| c.close_reason().is_none());
        open.push(conn.clone());
        drop(open);
        FIRST.notify_waiters();
        Ok(Self { endpoint, conn })
    }

    /// Opens the control stream.
    pub async fn control(&self) -> Result<Control, ConnError> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| ConnError::Lost(e.to_string()))?;
        Ok(Control { send, recv })
    }

    /// Closes the connection and waits (at most a second) until the relay has been told.
    ///
    /// The close ends every stream: finishing one just before would queue its end as
    /// stream data, and quinn (0.11) holds a close back behind queued stream data while
    /// the congestion window is full (as an MTU probe fills it on a short connection),
    /// so about one short command in seven waited out the whole second.
    pub async fn close(self) {
        let limit = std::time::Duration::from_secs(1);
        assist_net::close_and_flush(&self.conn, assist_net::codes::OK, b"done", limit).await;
    }
}

/// The control stream: framed messages both ways.
#[derive(Debug)]
pub struct Control {
    pub send: SendStream,
    pub recv: RecvStream,
}

impl Control {
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ConnError> {
        write_msg(&mut self.send, msg).await.map_err(|e| ConnError::Lost(e.to_string()))
    }

    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ConnError> {
        match read_msg(&mut self.recv).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ConnError::NoAnswer),
            Err(e) => Err(ConnError::Lost(e.to_string())),
        }
    }

    /// Sends one message and waits for the answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(&mut self, msg: &Q) -> Result<A, ConnError> {
        self.send(msg).await?;
        self.recv().await
    }
}
