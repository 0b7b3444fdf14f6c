//! Transport plumbing shared by the relay, the agent and the engineer CLI.
//!
//! - [`tls`]: rustls configurations on the aws-lc-rs provider: the relay's server side
//!   (client certificates optional, verified against the relay CA when presented) and the
//!   clients' side, which trusts a relay only through a pinned CA fingerprint.
//! - [`endpoint`]: quinn endpoints built from those, with transport settings for
//!   long-lived, mostly idle agent connections.
//! - [`framed`]: reading and writing [`assist_proto::frame`] frames on streams.
//!
//! Nothing here decides policy: who may do what is the relay's broker's business.

pub mod endpoint;
pub mod framed;
pub mod tls;

pub use endpoint::{
    ClientIdentity, ConnectError, client_endpoint, close_and_flush, connect, probe_ca, server_endpoint,
};
pub use framed::{FrameReader, FramedError, read_msg, write_msg};

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent; binaries call it at
/// start so that nothing falls back to another provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// QUIC application error codes used when closing connections and resetting streams.
pub mod codes {
    use quinn::VarInt;
    /// Normal close.
    pub const OK: VarInt = VarInt::from_u32(0);
    /// The peer broke the protocol (garbage, oversize frame).
    pub const PROTOCOL: VarInt = VarInt::from_u32(1);
    /// Not authenticated or not allowed.
    pub const REFUSED: VarInt = VarInt::from_u32(2);
    /// The session ended.
    pub const SESSION_ENDED: VarInt = VarInt::from_u32(3);
    /// The relay is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(4);
    /// A newer connection of the same agent replaced this one.
    pub const REPLACED: VarInt = VarInt::from_u32(5);
    /// The person at the client interrupted it (Ctrl-C, or a signal to stop).
    pub const INTERRUPTED: VarInt = VarInt::from_u32(6);
    /// The relay could not serve the connection just now (its database failed or timed
    /// out): not a refusal, the peer tries again later.
    pub const UNAVAILABLE: VarInt = VarInt::from_u32(7);
}
