//! [`AdminState`]: what the admin pages need from the relay, and the forms that cross
//! that seam. [`crate::ConsoleState`] takes it as a supertrait.
//!
//! Two calls: [`AdminState::admin_list`] reads one kind of thing, and
//! [`AdminState::admin_do`] makes one change. The relay (`relay/src/console_admin.rs`)
//! decides who may see and change what (admins only; an organisation's admin only their
//! organisation's things, and another organisation's are "not found"; the operator's
//! admins everything) and makes each change through the same functions, with the same
//! audit events, as the `assist-relay` administration commands. Lists come back as the
//! relay's own JSON views, passed through unchanged.

use crate::error::ApiError;
use crate::state::Account;
use serde::Deserialize;

/// What an admin page lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminList {
    /// Organisations, with who supports each.
    Orgs,
    /// Users, with their role, whether they are disabled and have an authenticator.
    Users,
    /// Enrolled agents, online as the broker knows it.
    Agents,
    /// Join tokens issued (never the tokens).
    Tokens,
    /// Maintenance windows, with whether each is open now.
    Windows,
    /// Webhooks, each with its most recent deliveries.
    Webhooks,
}

/// A maintenance window to add (as `assist-relay window add` takes it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowForm {
    pub org: String,
    /// One agent; every agent of the organisation when absent.
    pub agent: Option<String>,
    /// Cron, 5 fields, UTC.
    pub schedule: String,
    pub minutes: u64,
    pub capabilities: Vec<String>,
    pub engineers: Vec<String>,
    pub note: Option<String>,
}

/// A webhook to add (as `assist-relay webhook add` takes it; the secret is made by the
/// relay and shown once).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookForm {
    pub org: String,
    pub url: String,
    /// Comma-separated audit actions; the default set when absent.
    pub events: Option<String>,
    /// `json` (the default) or `chat`.
    pub format: Option<String>,
}

/// One change an admin makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAction {
    OrgAdd {
        name: String,
        supported_by: Vec<String>,
    },
    /// `vendor` supports `customer` (`on`) or no longer does.
    Support {
        customer: String,
        vendor: String,
        on: bool,
    },
    /// Adds a user with a new random password (returned once).
    UserAdd {
        name: String,
        org: String,
        role: String,
    },
    UserRole {
        name: String,
        role: String,
    },
    /// A new random password (returned once); the user's sessions and tokens end.
    UserResetPassword {
        name: String,
    },
    UserDisable {
        name: String,
    },
    UserEnable {
        name: String,
    },
    UserRemove {
        name: String,
    },
    AgentRevoke {
        name: String,
    },
    /// A single-use join token valid this long (returned once).
    TokenCreate {
        org: String,
        minutes: u64,
    },
    WindowAdd(WindowForm),
    WindowRemove {
        id: String,
    },
    WebhookAdd(WebhookForm),
    WebhookRemove {
        id: String,
    },
}

#[async_trait::async_trait]
pub trait AdminState: Send + Sync {
    /// One kind of thing the user may administer; [`ApiError::Forbidden`] for anyone but
    /// an admin.
    async fn admin_list(&self, who: &Account, what: AdminList) -> Result<serde_json::Value, ApiError>;
    /// Makes one change; returns what the page shows (a message, and what is shown once:
    /// a password, a token, a secret).
    async fn admin_do(&self, who: &Account, action: AdminAction) -> Result<serde_json::Value, ApiError>;
}
