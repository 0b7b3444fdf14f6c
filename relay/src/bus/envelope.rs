//! What travels on the relays' bus, one JSON object per notification, and how a message
//! too large for a notification's payload is carried (a row of `bus_messages`, named by
//! its id).
//!
//! It does not send or listen: [`super::PgBus`] does.

use assist_proto::ids::SessionId;
use serde::{Deserialize, Serialize};

/// PostgreSQL refuses a `NOTIFY` payload of 8,000 bytes or more (default build); larger
/// messages go through a row.
pub(super) const MAX_PAYLOAD: usize = 7900;

/// One notification on the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Envelope {
    /// The relay (process) `from` changed its pending requests or live sessions.
    Changed { from: String },
    /// A command (`broker::bus::Ask`) for the relay holding `session`: the one named `to`,
    /// or whichever holds it when `to` is `None`. Replies go to `from`, under `id`.
    Ask { from: String, id: u64, to: Option<String>, session: SessionId, body: Body },
    /// The holder took ask `id` of relay process `to`.
    Ack { to: String, id: u64 },
    /// Its outcome (`broker::bus::Answer`).
    Reply { to: String, id: u64, body: Body },
}

/// A message's content: in the notification, or in a row when it is too large.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Body {
    Inline(serde_json::Value),
    Row(i64),
}

impl Envelope {
    /// The body, to move it into a row when the whole does not fit.
    pub(super) fn body_mut(&mut self) -> Option<&mut Body> {
        match self {
            Envelope::Ask { body, .. } | Envelope::Reply { body, .. } => Some(body),
            Envelope::Changed { .. } | Envelope::Ack { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_a_row_reference_is_small() {
        let ask = Envelope::Ask {
            from: "a1".into(),
            id: 7,
            to: None,
            session: SessionId::new("s-0123456789ab"),
            body: Body::Inline(serde_json::json!({ "x": "y".repeat(20_000) })),
        };
        let text = serde_json::to_string(&ask).unwrap();
        assert!(text.len() > MAX_PAYLOAD);
        let mut back: Envelope = serde_json::from_str(&text).unwrap();
        *back.body_mut().unwrap() = Body::Row(42);
        let small = serde_json::to_string(&back).unwrap();
        assert!(small.len() < 200, "{small}");
        assert!(matches!(
            serde_json::from_str(&small).unwrap(),
            Envelope::Ask { body: Body::Row(42), id: 7, .. }
        ));
        assert!(Envelope::Ack { to: "a".into(), id: 1 }.body_mut().is_none());
    }
}
