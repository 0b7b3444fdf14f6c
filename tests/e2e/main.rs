//! End-to-end tests: the real binaries on loopback. One test binary with modules.

mod audit;
mod bad_input;
mod consent;
mod lifecycle;
mod pty;
mod recording;
mod webhooks;
