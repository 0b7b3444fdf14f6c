//! What the store keeps for webhooks: the hooks, their deliveries, and one attempt's
//! outcome. Plain data; the SQL is in `store/sqlite/webhooks.rs`, the rules in
//! [`crate::webhook`], which uses these types as they are.

use crate::audit::AuditRecord;
use assist_proto::ids::OrgName;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What a hook's body looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The full event as JSON (schema in `docs/webhooks.md`): for ticketing systems and
    /// programs.
    Json,
    /// `{"text": "..."}`, one readable line: what chat incoming webhooks accept.
    Chat,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Chat => "chat",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(PayloadFormat::Json),
            "chat" => Ok(PayloadFormat::Chat),
            _ => Err(format!("unknown webhook format {s:?}: expected json or chat")),
        }
    }
}

/// A configured webhook. Its `Debug` leaves out the URL (a chat webhook's path is itself
/// a secret) and the HMAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// `wh-` and 12 hex digits.
    pub id: String,
    pub org: OrgName,
    pub url: String,
    /// Audit action names; `None` means [`crate::webhook::DEFAULT_EVENTS`].
    pub events: Option<Vec<String>>,
    pub format: PayloadFormat,
    /// The HMAC key. Never logged, listed or audited.
    pub secret: String,
    pub created_at: i64,
    /// Only audit events with a greater sequence number go to this hook. The store sets
    /// it to the sequence number of the hook's own `webhook.added` event.
    pub after_seq: i64,
}

impl fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("events", &self.events)
            .field("format", &self.format)
            .field("created_at", &self.created_at)
            .field("after_seq", &self.after_seq)
            .finish_non_exhaustive()
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up: too many attempts, or too old.
    Failed,
    /// Its webhook was removed before it was delivered.
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed, DeliveryState::Cancelled]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown delivery state {s:?}"))
    }
}

/// A delivery to queue: one audit event for one hook, with the body every attempt sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// `d-` and 32 hex digits; sent as `X-Assist-Delivery`.
    pub id: String,
    pub webhook: String,
    pub event_seq: i64,
    pub event: String,
    pub session: Option<String>,
    pub body: String,
    pub created_at: i64,
}

/// A delivery as listed (without its body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook: String,
    pub event_seq: i64,
    pub event: String,
    pub session: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    /// The HTTP status of the last attempt, if it got an answer.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// A pending delivery that is due, with what sending it needs. Its `Debug` leaves out the
/// URL and the key, as [`WebhookRow`]'s does.
#[derive(Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub delivery: DeliveryRow,
    pub body: String,
    pub org: OrgName,
    pub url: String,
    pub secret: String,
}

impl fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DueDelivery")
            .field("delivery", &self.delivery)
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// One attempt's outcome, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub delivery: String,
    /// The attempt's number (1 for the first); becomes the delivery's `attempts`.
    pub attempt: u32,
    /// `Delivered`, `Failed` (given up) or `Pending` (to be retried at `next_attempt_at`).
    pub state: DeliveryState,
    pub next_attempt_at: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// What the enqueuer reads in one snapshot: the cursor, the audit events after it, and
/// the active hooks.
#[derive(Clone, Debug)]
pub struct WebhookScan {
    pub cursor: i64,
    /// The sequence number of the last event read (`cursor` if none): where the cursor
    /// moves once these events are queued.
    pub page_end: i64,
    pub events: Vec<AuditRecord>,
    pub hooks: Vec<WebhookRow>,
}
