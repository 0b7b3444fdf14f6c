//! The customer-side agent, `assist-agent`.
//!
//! - [`state`]: the enrollment on disk (key, certificate, relay CA, grant key);
//! - [`enroll`]: join token + CSR → certificate;
//! - [`run`]: the long-lived connection (one per relay of a cluster: [`relays`]), with
//!   reconnects ([`backoff`]);
//! - [`consent`]: the prompt on the agent's terminal;
//! - [`grants`]: the agent's own record of each grant, and its enforcement;
//! - [`channel`]: serving an approved channel, after checking the grant again;
//! - [`shared`]: the state and stream helpers every channel server uses;
//! - [`files`] and [`paths`]: file channels, and where their paths really lead;
//! - [`exec`]: the allowlist of diagnostic scripts; [`logs`]: log collection;
//! - [`forward`]: forwarded TCP connections to the targets a grant names;
//! - [`desktop`]: desktop channels, through the [`desktop::DesktopHost`] the binary provides;
//!   [`clipboard`]: clipboard channels, through the same host;
//! - [`process`]: PTY and piped processes.

pub mod backoff;
pub mod changes;
pub mod channel;
pub mod clipboard;
pub mod consent;
pub mod desktop;
pub mod enroll;
pub mod exec;
pub mod files;
pub mod forward;
pub mod grants;
pub mod logs;
pub mod paths;
pub mod process;
pub mod relays;
pub mod run;
pub mod shared;
pub mod show;
pub mod state;
