//! The assist wire protocol, independent of any transport.
//!
//! This crate holds what the relay, the agent and the engineer CLI must agree on:
//!
//! - [`ids`]: newtypes for the identifiers that cross the wire;
//! - [`caps`]: capabilities, ticket priorities and consent modes;
//! - [`consent`]: who consented to a grant (an approver, the agent's prompt, a window);
//! - [`desktop`]: remote-desktop messages (picture, cursor, input, clipboard) in a binary
//!   framing whose fixed header a relay can limit and index without decoding;
//! - [`frame`]: length-prefixed framing with a hard size limit, as a sans-IO codec;
//! - [`msg`]: the direction-named message enums of every stream;
//! - [`parts`]: list answers longer than one frame, sent and joined as parts;
//! - [`files`]: file channels, diagnostics and log collection: requests, sizes, digests;
//! - [`forward`]: port-forwarding targets (`HOST:PORT`) and the addresses never reached
//!   unless named;
//! - [`grant`]: the relay-signed statement of what a session may do;
//! - [`session`]: the session state machine (Requested → Approved/Denied/Expired →
//!   Active → Closed);
//! - [`text`]: foreign text made inert for people, and the rules for free text.
//!
//! It deliberately does no I/O: no sockets, no tokio, no clock. Time is an argument.

pub mod caps;
pub mod consent;
pub mod desktop;
pub mod files;
pub mod forward;
pub mod frame;
pub mod grant;
pub mod ids;
pub mod msg;
pub mod parts;
pub mod session;
pub mod text;

/// ALPN protocol identifier spoken on every assist QUIC connection.
pub const ALPN: &[u8] = b"assist/1";

/// TLS server name every client asks for. The relay certificate always carries it, so
/// clients can reach a relay by any address: trust comes from the pinned CA, not DNS.
pub const RELAY_SERVER_NAME: &str = "relay.assist.internal";

/// Audience (`aud`) of every engineer token the relay issues.
pub const TOKEN_AUDIENCE: &str = "assist";
