//! The QUIC side of the relay: what crosses the wire, and nothing that decides.
//!
//! - [`accept`]: the endpoint's accept loop, handshakes, the first frame, and shutdown;
//! - [`agent`]: an agent's connection (enrollment, `Hello`, control messages, the streams
//!   it opens);
//! - [`engineer`]: a person's connection (control stream, commands, channels);
//! - [`browser`]: the console's shell WebSocket as an engineer peer, and
//!   [`browser_desktop`] its desktop channel; [`desktop`]: a desktop stream's message
//!   headers checked, input dropped on a view-only channel;
//! - [`watcher`]: a watcher's read-only view in the console;
//! - [`peer`]: QUIC's side of the broker's seam (`broker::peer`);
//! - [`splice`]: moving an admitted channel's bytes, with the tee into the recording.
//!
//! **Invariant:** a channel is spliced only after `Relay::admit_channel` (or
//! `admit_agent_stream`) said yes; this module never decides who may do what.

mod accept;
mod agent;
pub(crate) mod browser;
mod browser_clipboard;
mod browser_desktop;
pub(crate) mod browser_files;
mod browser_open;
mod desktop;
mod engineer;
mod peer;
pub mod splice;
pub(crate) mod watcher;

pub use accept::serve;
