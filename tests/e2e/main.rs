//! End-to-end tests: the real binaries on loopback. One test binary with modules.

mod audit;
mod bad_input;
mod bypass;
mod consent;
mod console;
mod console_admin;
mod console_audit;
mod console_shell;
mod desktop;
mod desktop_recording;
mod files;
mod forward;
mod grants;
mod http_limits;
mod lifecycle;
mod postgres;
mod pty;
mod readme;
mod recording;
mod recording_full;
mod refusals;
mod shutdown;
mod spoofing;
mod ssh;
mod throttle;
mod webhooks;
