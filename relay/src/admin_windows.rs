//! `assist-relay window add|list|remove`: an organisation's pre-approved maintenance
//! windows, as library functions (see [`crate::admin`] for the conventions).
//!
//! A window pre-approves requests from the named engineers, for the named capabilities, on
//! one agent or all agents of the organisation, while it is open (see
//! [`crate::broker::windows`] for the matching rule). Windows only apply to agents whose
//! consent mode is `window`.

use crate::admin::AdminError;
use crate::audit::{Action, AuditEvent};
use crate::broker::windows::parse_schedule;
use crate::store::{Store, WindowRow};
use assist_proto::caps::Capability;
use assist_proto::ids::{AgentName, OrgName, UserName, validate_name};
use serde::Serialize;
use std::time::Duration;

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// The longest a window may stay open each time: a weekend.
pub const MAX_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

/// What `window add` is given.
#[derive(Clone, Debug)]
pub struct NewWindow {
    pub org: String,
    pub agent: Option<String>,
    pub schedule: String,
    pub duration: Duration,
    pub capabilities: Vec<Capability>,
    pub engineers: Vec<String>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowView {
    pub id: String,
    pub org: OrgName,
    pub agent: Option<AgentName>,
    pub schedule: String,
    pub duration_secs: u64,
    pub capabilities: Vec<Capability>,
    pub engineers: Vec<UserName>,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// Seconds the window stays open, if it is open now.
    pub open_now_secs: Option<u64>,
}

fn invalid(message: impl Into<String>) -> AdminError {
    AdminError::Invalid(message.into())
}

fn new_id() -> String {
    format!("w-{}", hex::encode(assist_certs::random_bytes::<4>()))
}

pub async fn window_add(store: &dyn Store, w: NewWindow, actor: &str, now: i64) -> Result<WindowView> {
    validate_name("organisation", &w.org).map_err(|e| invalid(e.to_string()))?;
    if let Some(a) = &w.agent {
        validate_name("agent", a).map_err(|e| invalid(e.to_string()))?;
        match store.agent(&AgentName::new(a.as_str())).await? {
            Some(row) if row.org.as_str() == w.org => {}
            _ => return Err(invalid(format!("organisation {} has no agent named {a}", w.org))),
        }
    }
    parse_schedule(&w.schedule).map_err(|e| invalid(e.to_string()))?;
    if w.duration < Duration::from_secs(60) || w.duration > MAX_WINDOW {
        return Err(invalid("a window lasts between 1 minute and 3 days"));
    }
    if w.capabilities.is_empty() {
        return Err(invalid("name at least one capability the window grants (--capability)"));
    }
    for c in &w.capabilities {
        c.validate().map_err(|e| invalid(format!("capability {c}: {e}")))?;
        // A window could never pre-approve it: the relay refuses every request naming it.
        c.check_served("relay").map_err(|e| invalid(e.to_string()))?;
    }
    if w.engineers.is_empty() {
        return Err(invalid("name at least one engineer who may use the window (--engineer)"));
    }
    for e in &w.engineers {
        validate_name("user", e).map_err(|e| invalid(e.to_string()))?;
    }
    let row = WindowRow {
        id: new_id(),
        org: OrgName::new(w.org.as_str()),
        agent: w.agent.map(AgentName::new),
        schedule: w.schedule,
        duration_secs: w.duration.as_secs(),
        capabilities: w.capabilities,
        engineers: w.engineers.into_iter().map(UserName::new).collect(),
        note: w.note,
        created_by: actor.to_owned(),
        created_at: now,
        removed_at: None,
    };
    let event = AuditEvent::new(actor, Action::WindowAdded).org(&row.org).target(row.id.as_str()).detail(
        serde_json::json!({
            "agent": row.agent,
            "schedule": row.schedule,
            "duration_secs": row.duration_secs,
            "capabilities": row.capabilities,
            "engineers": row.engineers,
            "note": row.note,
        }),
    );
    store.add_window(&row, &event).await?;
    Ok(view(row, now))
}

pub async fn window_list(store: &dyn Store, org: Option<&str>, now: i64) -> Result<Vec<WindowView>> {
    let org = org.map(OrgName::new);
    Ok(store.list_windows(org.as_ref()).await?.into_iter().map(|w| view(w, now)).collect())
}

pub async fn window_remove(store: &dyn Store, id: &str, actor: &str, now: i64) -> Result<()> {
    let Some(w) = store.list_windows(None).await?.into_iter().find(|w| w.id == id) else {
        return Err(AdminError::NotFound { what: "window", name: id.to_owned() });
    };
    let event = AuditEvent::new(actor, Action::WindowRemoved).org(&w.org).target(id);
    store.remove_window(id, now, &event).await?;
    Ok(())
}

fn view(w: WindowRow, now: i64) -> WindowView {
    let open_now_secs = crate::broker::windows::open_for(&w, now);
    WindowView {
        id: w.id,
        org: w.org,
        agent: w.agent,
        schedule: w.schedule,
        duration_secs: w.duration_secs,
        capabilities: w.capabilities,
        engineers: w.engineers,
        note: w.note,
        created_by: w.created_by,
        created_at: w.created_at,
        open_now_secs,
    }
}
