//! Outgoing webhooks: session events pushed to ticketing systems and chat, signed, retried
//! and audited (the receiver's side is in `docs/webhooks.md`).
//!
//! - Driven by the audit log, not by the broker: every session event is already an audit
//!   event, stored with its state change. A relay task ([`Worker`]) reads the events after
//!   a durable cursor, and for each webhook that wants the event queues a delivery, in the
//!   transaction that moves the cursor. The broker is never waited on.
//! - Deliveries are rows: each attempt is a signed `POST` ([`sign`]); its outcome is stored
//!   with a `webhook.delivered` or `webhook.failed` audit event; failures are retried with
//!   backoff ([`backoff`]). A restart loses nothing and queues nothing twice; a delivery may
//!   be sent twice (at least once), always with the same `X-Assist-Delivery` id.
//! - `webhook.*` events never trigger a webhook, so deliveries cannot feed themselves.
//!
//! # Which events a webhook gets
//!
//! A webhook belongs to an organisation and names the audit actions it wants ([`rows::WebhookRow`]
//! `events`; by default [`DEFAULT_EVENTS`], the session lifecycle). It gets an event when
//! ([`in_scope`]) its organisation is the event's organisation (for sessions: the
//! customer, whose agent it is), or the engineer's organisation of the event's session
//! (the vendor, whose ticket it usually is), or the operator organisation (which gets
//! every organisation's events). Only events stored after the webhook was added are sent.
//!
//! What it does not do: deliver in a guaranteed order across retries (bodies carry `seq`),
//! follow redirects, or keep the receiver's answer beyond its status.

pub mod admin;
pub mod backoff;
pub mod http;
pub mod payload;
pub mod sign;
mod worker;

#[cfg(test)]
mod https_tests;
#[cfg(test)]
mod tests;

/// The webhook rows the store keeps (defined with the store, which imports nothing above it).
pub use crate::store::webhooks as rows;
pub use worker::{WebhookConfig, Worker};

use crate::audit::Action;
use crate::datadir::OPERATOR_ORG;

/// What a webhook added without `--events` gets: the session lifecycle. Resolved when
/// events are matched, so kinds added here later reach existing webhooks too.
pub const DEFAULT_EVENTS: &[&str] = &[
    "session.requested",
    "session.approved",
    "session.denied",
    "session.expired",
    "session.started",
    "session.ended",
    "session.escalation_requested",
    "session.escalated",
    "session.escalation_denied",
    "session.escalation_expired",
    "grant.revoked",
    "grant.expired",
];

/// Whether an audit action may trigger webhooks at all: not the webhooks' own events.
pub fn deliverable(action: &str) -> bool {
    !action.starts_with("webhook.")
}

/// Checks a comma-separated list of audit action names for `--events`: every name known,
/// none a `webhook.*` event, at least one. Returns the names, without repeats, in order.
pub fn parse_events(list: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.parse::<Action>().is_err() {
            return Err(format!(
                "unknown event {name:?}; events are audit actions such as {}",
                DEFAULT_EVENTS.join(", ")
            ));
        }
        if !deliverable(name) {
            return Err(format!("{name:?}: webhook.* events cannot trigger webhooks"));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err("--events names no event".to_owned());
    }
    Ok(names)
}

/// Whether a webhook's event list (`None`: [`DEFAULT_EVENTS`]) includes `action`.
pub fn wants_action(events: Option<&[String]>, action: &str) -> bool {
    deliverable(action)
        && match events {
            None => DEFAULT_EVENTS.contains(&action),
            Some(list) => list.iter().any(|e| e == action),
        }
}

/// Whether an event concerns a webhook's organisation: see the module documentation.
/// `event_org` is the audit event's organisation; `engineer_org` that of the engineer of
/// its session, if it has one.
pub fn in_scope(hook_org: &str, event_org: Option<&str>, engineer_org: Option<&str>) -> bool {
    hook_org == OPERATOR_ORG || event_org == Some(hook_org) || engineer_org == Some(hook_org)
}
