//! `assist-relay webhook add|list|remove|deliveries` as library functions: they check what
//! an administrator typed, store the change with its audit event, and return typed
//! results. Secrets are returned once, by `add`, and never listed or audited.
//!
//! They do not print or read input: that is [`super::cli`]'s job.

use super::rows::{DeliveryRow, PayloadFormat, WebhookRow};
use super::sign::{MIN_SECRET_CHARS, generate_secret, random_hex};
use super::{DEFAULT_EVENTS, http, parse_events};
use crate::admin::AdminError;
use crate::audit::{Action, AuditEvent};
use crate::store::Store;
use assist_proto::ids::{OrgName, validate_name};
use serde::Serialize;
use serde_json::json;

/// A webhook as listed: never its secret, and its URL in full only here (audit events and
/// logs show the origin alone, since a chat webhook's path is itself a credential).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookView {
    pub id: String,
    pub org: OrgName,
    pub url: String,
    /// The event names; `default` stands for the default set.
    pub events: Vec<String>,
    pub format: PayloadFormat,
    pub created_at: i64,
}

impl From<WebhookRow> for WebhookView {
    fn from(r: WebhookRow) -> Self {
        Self {
            id: r.id,
            org: r.org,
            url: r.url,
            events: r.events.unwrap_or_else(|| vec!["default".to_owned()]),
            format: r.format,
            created_at: r.created_at,
        }
    }
}

/// What `webhook add` needs.
#[derive(Clone, Debug)]
pub struct NewWebhook<'a> {
    pub org: &'a str,
    pub url: &'a str,
    /// Comma-separated audit actions; `None` for [`DEFAULT_EVENTS`].
    pub events: Option<&'a str>,
    pub format: PayloadFormat,
    /// The shared secret; `None` generates one.
    pub secret: Option<String>,
}

/// A webhook just added, with its secret (shown this once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Added {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

fn check_secret(secret: &str) -> Result<(), AdminError> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(AdminError::Invalid(format!(
            "the secret is too short: use at least {MIN_SECRET_CHARS} characters"
        )));
    }
    if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AdminError::Invalid("the secret must not contain spaces or control characters".into()));
    }
    Ok(())
}

/// Adds a webhook for an organisation. Audited as `webhook.added` (origin, events and
/// format; never the secret or the URL's path).
pub async fn add(store: &dyn Store, new: NewWebhook<'_>, actor: &str, now: i64) -> Result<Added, AdminError> {
    validate_name("organisation", new.org).map_err(|e| AdminError::Invalid(e.to_string()))?;
    http::validate_url(new.url).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let events = new.events.map(parse_events).transpose().map_err(AdminError::Invalid)?;
    let secret = match new.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(),
    };
    let org = OrgName::new(new.org);
    let hook = WebhookRow {
        id: format!("wh-{}", random_hex::<6>()),
        org: org.clone(),
        url: new.url.to_owned(),
        events,
        format: new.format,
        secret,
        created_at: now,
        after_seq: 0,
    };
    let event = AuditEvent::new(actor, Action::WebhookAdded).org(&org).target(hook.id.as_str()).detail(json!({
        "url": http::origin(&hook.url),
        "events": hook.events.clone().unwrap_or_else(|| DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect()),
        "default_events": hook.events.is_none(),
        "format": hook.format,
    }));
    let stored = store.add_webhook(&hook, &event).await?;
    let secret = stored.secret.clone();
    Ok(Added { webhook: stored.into(), secret })
}

/// Webhooks not removed, oldest first.
pub async fn list(store: &dyn Store) -> Result<Vec<WebhookView>, AdminError> {
    Ok(store.list_webhooks().await?.into_iter().map(WebhookView::from).collect())
}

/// Removes a webhook; its pending deliveries are cancelled. Returns how many.
pub async fn remove(store: &dyn Store, id: &str, actor: &str, now: i64) -> Result<u64, AdminError> {
    let hooks = store.list_webhooks().await?;
    let Some(hook) = hooks.iter().find(|h| h.id == id) else {
        return Err(AdminError::NotFound { what: "webhook", name: id.to_owned() });
    };
    let event = AuditEvent::new(actor, Action::WebhookRemoved)
        .org(&hook.org)
        .target(id)
        .detail(json!({ "url": http::origin(&hook.url) }));
    Ok(store.remove_webhook(id, now, &event).await?)
}

/// Deliveries, newest event first, of one webhook or of all.
pub async fn deliveries(
    store: &dyn Store,
    webhook: Option<&str>,
    limit: u32,
) -> Result<Vec<DeliveryRow>, AdminError> {
    Ok(store.list_webhook_deliveries(webhook, limit).await?)
}
