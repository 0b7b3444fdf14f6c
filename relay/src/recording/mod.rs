//! Session recording: every spliced byte, per channel and direction, with timestamps,
//! resizes and session markers, in an append-only, chunked, hash-chained file that is
//! sealed and signed when the session ends.
//!
//! - [`format`]: the canonical format (specified in `docs/recording.md`);
//! - [`store`]: where recordings live ([`store::LocalDir`] by default, or an object store);
//! - [`stream`]: reading a stored recording chunk by chunk;
//! - [`recorder`]: the per-session writer the splices feed, with backpressure ([`budget`]:
//!   what may be forwarded but not yet written is bounded), and
//!   [`batch`], the events chunk it gathers;
//! - [`verify`]: offline verification (valid, truncated or tampered);
//! - [`export`]: asciicast v2, raw bytes, terminal replay; [`mp4`]: a desktop channel's
//!   video as MP4, its H.264 copied;
//! - [`desktop_index`]: the seek index of desktop channels, in the seal.
//!
//! Whether recording is mandatory, and what a failure does to the session, is the
//! broker's decision, not this module's.

pub mod batch;
pub mod budget;
pub mod cli;
pub mod desktop_index;
pub mod export;
pub mod format;
pub mod mp4;
pub mod recorder;
pub mod replay;
pub mod replay_source;
pub mod store;
pub mod stream;
pub mod verify;

pub use recorder::{Recorder, RecordingFailed};
pub use store::{LocalDir, ObjectRecordings, RecordingStore};
pub use verify::{Verdict, verify, verify_file, verify_stored};

#[cfg(test)]
mod tests;
