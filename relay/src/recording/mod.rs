//! Session recording: every spliced byte, per channel and direction, with timestamps,
//! resizes and session markers, in an append-only, chunked, hash-chained file that is
//! sealed and signed when the session ends.
//!
//! - [`format`]: the canonical format (specified in `docs/recording.md`);
//! - [`store`]: where recordings live ([`store::LocalDir`] by default);
//! - [`recorder`]: the per-session writer the splices feed, with backpressure;
//! - [`verify`]: offline verification (valid, truncated or tampered);
//! - [`export`]: asciicast v2, raw bytes, terminal replay.
//!
//! Whether recording is mandatory, and what a failure does to the session, is the
//! broker's decision, not this module's.

pub mod cli;
pub mod export;
pub mod format;
pub mod recorder;
pub mod store;
pub mod verify;

pub use recorder::{Recorder, RecordingFailed};
pub use store::{LocalDir, RecordingStore};
pub use verify::{Verdict, verify};

#[cfg(test)]
mod tests;
