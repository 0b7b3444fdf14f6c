//! assist's client side.
//!
//! - [`engineer`]: `assist`, for engineers, approvers and admins: login, listings,
//!   answers, and shell sessions;
//! - [`agent`]: `assist-agent`, on the customer machine: enrollment, the long-lived
//!   connection to the relay, consent prompts, and the processes that serve approved
//!   channels;
//! - [`clock`], [`conn`], [`disk`], [`files`], [`term`]: what both share (neither side
//!   imports the other).

pub mod agent;
pub mod clock;
pub mod conn;
pub mod disk;
pub mod engineer;
pub mod files;
pub mod term;
