//! The relay's side of the console's admin pages: [`RelayConsole`] implements
//! [`assist_console::AdminState`].
//!
//! - Who: only admins. The operator organisation's admins see and change everything;
//!   another organisation's admin sees and changes only their organisation's users,
//!   agents, join tokens, windows and webhooks, and another organisation's are "not found"
//!   exactly like ones that do not exist. Adding organisations and changing who supports
//!   whom is the operator's (it decides which vendors reach which customers). Nobody
//!   disables, removes, resets the password of or changes the role of their own account
//!   here (that would lock
//!   them out mid-page); another admin or the CLI does.
//! - How: every change goes through the functions the `assist-relay` administration
//!   commands use ([`crate::admin`], [`crate::admin_users`], [`crate::admin_accounts`],
//!   [`crate::admin_windows`], [`crate::webhook::admin`]), so it is checked and audited
//!   the same way; the audit actor is the admin's user name. The agent list's online state
//!   comes from the broker ([`Relay::list_agents`]), with the relays each agent is
//!   connected to as stored (`relays`); a revoked agent's connection is closed
//!   by the relay's revocation poll, as after `assist-relay agent revoke`.
//!
//! It does not render anything: lists are the admin functions' own views as JSON.

use crate::admin::{self, AdminError, Revocation};
use crate::admin_windows::NewWindow;
use crate::broker::Relay;
use crate::console_state::RelayConsole;
use crate::datadir::OPERATOR_ORG;
use crate::store::Store;
use crate::webhook;
use assist_console::{Account, AdminAction, AdminList, AdminState, ApiError};
use assist_proto::caps::{Capability, Role};
use assist_proto::ids::{AgentName, OrgName, UserName};
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::Duration;

/// Recent deliveries shown with each webhook.
const DELIVERIES_SHOWN: u32 = 10;

fn from_admin(e: AdminError) -> ApiError {
    match e {
        AdminError::Invalid(_) | AdminError::PasswordTooShort | AdminError::TtlOutOfRange { .. } => {
            ApiError::BadRequest(e.to_string())
        }
        AdminError::Exists { .. } => ApiError::Conflict(e.to_string()),
        AdminError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        AdminError::Store(_) | AdminError::Auth(_) => crate::console_state::internal(e),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(crate::console_state::internal)
}

fn not_found(what: &'static str, name: &str) -> ApiError {
    ApiError::NotFound(AdminError::NotFound { what, name: name.to_owned() }.to_string())
}

fn message(text: String) -> Value {
    json!({ "message": text })
}

/// An admin, and which organisation's things they administer (`None`: all).
struct Scope {
    actor: String,
    org: Option<OrgName>,
}

impl Scope {
    fn of(who: &Account) -> Result<Self, ApiError> {
        if who.role != Role::Admin.as_str() {
            return Err(ApiError::Forbidden("only administrators may use the admin pages".into()));
        }
        let org = (who.org != OPERATOR_ORG).then(|| OrgName::new(who.org.as_str()));
        Ok(Self { actor: who.user.clone(), org })
    }

    fn sees(&self, org: &OrgName) -> bool {
        self.org.as_ref().is_none_or(|mine| mine == org)
    }

    fn operator_only(&self, what: &str) -> Result<(), ApiError> {
        match self.org {
            None => Ok(()),
            Some(_) => {
                Err(ApiError::Forbidden(format!("only the relay operator's administrators may {what}")))
            }
        }
    }

    /// An organisation this admin may put things in; others are "not found".
    fn org(&self, name: &str) -> Result<(), ApiError> {
        if self.sees(&OrgName::new(name)) { Ok(()) } else { Err(not_found("organisation", name)) }
    }
}

impl RelayConsole {
    fn admin_store(&self) -> &dyn Store {
        self.db.as_ref()
    }

    /// The user, if this admin may administer them.
    async fn admin_user(&self, scope: &Scope, name: &str) -> Result<crate::store::UserRow, ApiError> {
        let row = self.db.user(&UserName::new(name)).await.map_err(crate::console_state::internal)?;
        row.filter(|r| scope.sees(&r.org)).ok_or_else(|| not_found("user", name))
    }

    fn not_self(scope: &Scope, name: &str, what: &str) -> Result<(), ApiError> {
        if scope.actor == name {
            return Err(ApiError::Conflict(format!(
                "you cannot {what} your own account here; another administrator can"
            )));
        }
        Ok(())
    }

    async fn list(&self, scope: &Scope, what: AdminList) -> Result<Value, ApiError> {
        let store = self.admin_store();
        match what {
            AdminList::Orgs => {
                let orgs = admin::org_list(store).await.map_err(from_admin)?;
                to_json(&orgs.into_iter().filter(|o| scope.sees(&o.name)).collect::<Vec<_>>())
            }
            AdminList::Users => {
                let mut out = Vec::new();
                for u in admin::user_list(store).await.map_err(from_admin)? {
                    if !scope.sees(&u.org) {
                        continue;
                    }
                    let name = u.name.to_string();
                    let mut v = to_json(&u)?;
                    let disabled =
                        self.db.is_disabled(&name).await.map_err(crate::console_state::internal)?;
                    let mfa =
                        self.db.totp(&name).await.map_err(crate::console_state::internal)?.secret.is_some();
                    v["disabled"] = json!(disabled);
                    v["mfa"] = json!(mfa);
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            AdminList::Agents => {
                // The broker's view: scoped by the same rule as `assist agents`, online as
                // it knows it.
                let who = crate::broker::policy::Principal {
                    user: UserName::new(scope.actor.as_str()),
                    org: scope.org.clone().unwrap_or_else(|| OrgName::new(OPERATOR_ORG)),
                    role: Role::Admin,
                };
                let agents =
                    self.relay().list_agents(&who).await.map_err(crate::console_state::from_refusal)?;
                // And the relays each is connected to, as stored (in a cluster, the others'
                // too).
                let mut relays: std::collections::HashMap<AgentName, Vec<String>> = store
                    .list_agents()
                    .await
                    .map_err(crate::console_state::internal)?
                    .into_iter()
                    .map(|a| (a.name, a.relays))
                    .collect();
                let mut out = Vec::with_capacity(agents.len());
                for a in agents {
                    let mut v = to_json(&a)?;
                    v["relays"] = json!(relays.remove(&a.name).unwrap_or_default());
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            AdminList::Tokens => {
                let tokens = crate::admin_accounts::token_list(store).await.map_err(from_admin)?;
                to_json(&tokens.into_iter().filter(|t| scope.sees(&t.org)).collect::<Vec<_>>())
            }
            AdminList::Windows => {
                let org = scope.org.as_ref().map(|o| o.as_str());
                let now = assist_console::ConsoleState::now_ms(self);
                to_json(&crate::admin_windows::window_list(store, org, now).await.map_err(from_admin)?)
            }
            AdminList::Webhooks => {
                let mut out = Vec::new();
                for hook in webhook::admin::list(store).await.map_err(from_admin)? {
                    if !scope.sees(&hook.org) {
                        continue;
                    }
                    let deliveries = webhook::admin::deliveries(store, Some(&hook.id), DELIVERIES_SHOWN)
                        .await
                        .map_err(from_admin)?;
                    let mut v = to_json(&hook)?;
                    v["deliveries"] = to_json(&deliveries)?;
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
        }
    }

    async fn change(&self, scope: &Scope, action: AdminAction) -> Result<Value, ApiError> {
        let store = self.admin_store();
        let now = assist_console::ConsoleState::now_ms(self);
        let actor = scope.actor.as_str();
        let role = |r: &str| {
            Role::from_str(r).map_err(|_| {
                ApiError::BadRequest(format!(
                    "unknown role {r:?}: choose engineer, approver, auditor or admin"
                ))
            })
        };
        match action {
            AdminAction::OrgAdd { name, supported_by } => {
                scope.operator_only("add organisations")?;
                admin::org_add(store, &name, &supported_by, actor, now).await.map_err(from_admin)?;
                Ok(message(format!("added organisation {name}")))
            }
            AdminAction::Support { customer, vendor, on } => {
                scope.operator_only("change which organisations support which")?;
                let changed = crate::admin_accounts::org_support(store, &customer, &vendor, on, actor, now)
                    .await
                    .map_err(from_admin)?;
                Ok(message(match (on, changed) {
                    (true, true) => {
                        format!("{vendor}'s engineers may now ask for sessions on {customer}'s agents")
                    }
                    (false, true) => format!("{vendor} no longer supports {customer}"),
                    (true, false) => format!("{vendor} already supports {customer}"),
                    (false, false) => format!("{vendor} did not support {customer}"),
                }))
            }
            AdminAction::UserAdd { name, org, role: r } => {
                scope.org(&org)?;
                let r = role(&r)?;
                let password = crate::auth::new_password();
                admin::user_add(store, &name, &org, r, &password, actor, now).await.map_err(from_admin)?;
                Ok(
                    json!({ "message": format!("added {r} {name} to {org}"), "user": name, "password": password }),
                )
            }
            AdminAction::UserRole { name, role: r } => {
                let r = role(&r)?;
                self.admin_user(scope, &name).await?;
                Self::not_self(scope, &name, "change the role of")?;
                let changed = crate::admin_accounts::user_set_role(store, &name, r, actor, now)
                    .await
                    .map_err(from_admin)?;
                Ok(message(if changed {
                    format!("{name} is now {r}; they were signed out everywhere and sign in again as {r}")
                } else {
                    format!("{name} already is {r}")
                }))
            }
            AdminAction::UserResetPassword { name } => {
                self.admin_user(scope, &name).await?;
                Self::not_self(scope, &name, "reset the password of")?;
                let password = crate::admin_accounts::user_reset_password(store, &name, actor, now)
                    .await
                    .map_err(from_admin)?;
                Ok(json!({
                    "message": format!("{name} has a new password and was signed out everywhere"),
                    "user": name,
                    "password": password,
                }))
            }
            AdminAction::UserDisable { name } => {
                self.admin_user(scope, &name).await?;
                Self::not_self(scope, &name, "disable")?;
                crate::admin_users::user_disable(store, &name, actor, now).await.map_err(from_admin)?;
                Ok(message(format!("disabled {name}: signed out everywhere, CLI tokens revoked")))
            }
            AdminAction::UserEnable { name } => {
                self.admin_user(scope, &name).await?;
                let changed =
                    crate::admin_accounts::user_enable(store, &name, actor, now).await.map_err(from_admin)?;
                Ok(message(if changed {
                    format!("{name} may sign in again")
                } else {
                    format!("{name} was not disabled")
                }))
            }
            AdminAction::UserRemove { name } => {
                self.admin_user(scope, &name).await?;
                Self::not_self(scope, &name, "remove")?;
                crate::admin_users::user_remove(store, &name, actor, now).await.map_err(from_admin)?;
                Ok(message(format!("removed {name}: signed out everywhere, CLI tokens revoked")))
            }
            AdminAction::AgentRevoke { name } => {
                let row = self
                    .db
                    .agent(&AgentName::new(name.as_str()))
                    .await
                    .map_err(crate::console_state::internal)?;
                if !row.is_some_and(|r| scope.sees(&r.org)) {
                    return Err(not_found("agent", &name));
                }
                Ok(message(
                    match admin::agent_revoke(store, &name, actor, now).await.map_err(from_admin)? {
                        Revocation::Revoked { .. } => {
                            format!(
                                "revoked agent {name}: its connection closes within seconds and it cannot connect again"
                            )
                        }
                        Revocation::AlreadyRevoked { at } => {
                            format!("agent {name} was already revoked at {}", crate::fmt_time(at))
                        }
                    },
                ))
            }
            AdminAction::TokenCreate { org, minutes } => {
                scope.org(&org)?;
                let ttl = Duration::from_secs(minutes.saturating_mul(60));
                let token = admin::token_create(store, &org, ttl, actor, now).await.map_err(from_admin)?;
                let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
                Ok(json!({
                    "message": format!("single-use join token for {org}"),
                    "token": token,
                    "expires_at": expires_at,
                }))
            }
            AdminAction::WindowAdd(f) => {
                scope.org(&f.org)?;
                let capabilities = f
                    .capabilities
                    .iter()
                    .map(|c| {
                        Capability::from_str(c.trim()).map_err(|e| ApiError::BadRequest(format!("{c}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let note = f.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                if let Some(n) = &note {
                    assist_proto::text::check_reason("note", n)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                }
                let w = NewWindow {
                    org: f.org,
                    agent: f.agent.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()),
                    schedule: f.schedule.trim().to_owned(),
                    duration: Duration::from_secs(f.minutes.saturating_mul(60)),
                    capabilities,
                    engineers: f
                        .engineers
                        .into_iter()
                        .map(|e| e.trim().to_owned())
                        .filter(|e| !e.is_empty())
                        .collect(),
                    note,
                };
                let v = crate::admin_windows::window_add(store, w, actor, now).await.map_err(from_admin)?;
                Ok(json!({ "message": format!("added window {}", v.id), "window": to_json(&v)? }))
            }
            AdminAction::WindowRemove { id } => {
                let org = scope.org.as_ref().map(|o| o.as_str());
                let windows = crate::admin_windows::window_list(store, org, now).await.map_err(from_admin)?;
                if !windows.iter().any(|w| w.id == id) {
                    return Err(not_found("window", &id));
                }
                crate::admin_windows::window_remove(store, &id, actor, now).await.map_err(from_admin)?;
                Ok(message(format!("removed window {id}")))
            }
            AdminAction::WebhookAdd(f) => {
                scope.org(&f.org)?;
                let format = match f.format.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                    None => webhook::rows::PayloadFormat::Json,
                    Some(s) => webhook::rows::PayloadFormat::from_str(s).map_err(ApiError::BadRequest)?,
                };
                let events = f.events.as_deref().map(str::trim).filter(|s| !s.is_empty());
                let new = webhook::admin::NewWebhook {
                    org: &f.org,
                    url: f.url.trim(),
                    events,
                    format,
                    secret: None,
                };
                let added = webhook::admin::add(store, new, actor, now).await.map_err(from_admin)?;
                Ok(json!({
                    "message": format!("added webhook {}", added.webhook.id),
                    "id": added.webhook.id,
                    "secret": added.secret,
                }))
            }
            AdminAction::WebhookRemove { id } => {
                let hooks = webhook::admin::list(store).await.map_err(from_admin)?;
                if !hooks.iter().any(|h| h.id == id && scope.sees(&h.org)) {
                    return Err(not_found("webhook", &id));
                }
                let cancelled = webhook::admin::remove(store, &id, actor, now).await.map_err(from_admin)?;
                Ok(message(format!("removed webhook {id} ({cancelled} pending deliveries cancelled)")))
            }
        }
    }

    fn relay(&self) -> &Relay {
        &self.relay
    }
}

#[async_trait::async_trait]
impl AdminState for RelayConsole {
    async fn admin_list(&self, who: &Account, what: AdminList) -> Result<Value, ApiError> {
        self.list(&Scope::of(who)?, what).await
    }

    async fn admin_do(&self, who: &Account, action: AdminAction) -> Result<Value, ApiError> {
        self.change(&Scope::of(who)?, action).await
    }
}

#[cfg(test)]
#[path = "console_admin_tests.rs"]
mod tests;
