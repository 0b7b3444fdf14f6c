//! `assist-relay user disable|remove`: take a user's access away at once, as library
//! functions (see [`crate::admin`] for the conventions).
//!
//! Both end the user's console sessions and revoke every CLI token they hold in the same
//! transaction as their audit event; the relay refuses those on the next request or
//! connection (a QUIC connection already open keeps its identity until it closes).
//! Disabling keeps the user's row (a later issue may re-enable); removing deletes it
//! with their authenticator and recovery codes. Neither touches the history of sessions
//! the user took part in.

use crate::admin::AdminError;
use crate::audit::{Action, AuditEvent};
use crate::store::Store;
use assist_proto::ids::{UserName, validate_name};

type Result<T, E = AdminError> = std::result::Result<T, E>;

async fn event(store: &dyn Store, name: &str, actor: &str, action: Action) -> Result<AuditEvent> {
    validate_name("user", name).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let row = store
        .user(&UserName::new(name))
        .await?
        .ok_or_else(|| AdminError::NotFound { what: "user", name: name.to_owned() })?;
    Ok(AuditEvent::new(actor, action)
        .org(&row.org)
        .target(name)
        .detail(serde_json::json!({ "role": row.role })))
}

/// Disables a user: no more sign-ins, console sessions ended, CLI tokens revoked.
pub async fn user_disable(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<()> {
    let event = event(store, name, actor, Action::UserDisabled).await?;
    if !store.disable_user(name, &event, now).await? {
        return Err(AdminError::NotFound { what: "user", name: name.to_owned() });
    }
    Ok(())
}

/// Removes a user and their sign-in state; ends their console sessions and CLI tokens.
pub async fn user_remove(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<()> {
    let event = event(store, name, actor, Action::UserRemoved).await?;
    if !store.remove_user(name, &event, now).await? {
        return Err(AdminError::NotFound { what: "user", name: name.to_owned() });
    }
    Ok(())
}
