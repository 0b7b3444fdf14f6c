//! The `assist-relay` binary's own modules: subcommand arguments (clap) and their output
//! for people and programs. They belong to the binary, not the library, so that the relay
//! library neither uses clap nor anyhow; the work itself is done by library functions
//! (`assist_relay::admin`, `admin_windows`, `webhook::admin`).
//!
//! - [`audit`]: `assist-relay audit ...`;
//! - [`keys`]: where an administration command finds the keys and the database (a data
//!   directory, or `--cluster-bundle`);
//! - [`recording`]: `assist-relay recording ...` and `keys export`;
//! - [`table`]: a JSON array for programs, or a table with aligned columns for people;
//! - [`window`]: `assist-relay window ...`;
//! - [`webhook`]: `assist-relay webhook ...`.

pub mod audit;
pub mod keys;
pub mod recording;
pub mod table;
pub mod webhook;
pub mod window;
