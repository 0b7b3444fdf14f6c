//! Reaching the relay: address resolution, pinned connection, and a request/response
//! helper for the control stream.

use assist_certs::Fingerprint;
use assist_net::{ClientIdentity, read_msg, write_msg};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

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
        Ok(Self { endpoint, conn })
    }

    /// Opens the control stream.
    pub async fn control(&self) -> Result<Control, ConnError> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| ConnError::Lost(e.to_string()))?;
        Ok(Control { send, recv })
    }

    /// Closes the connection and waits (at most a second) until the relay has been told.
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
