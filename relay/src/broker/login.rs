//! Password login and token verification for engineer connections.
//!
//! Every login attempt that is checked is audited: `login.succeeded` (and a login whose
//! event cannot be stored fails), `login.failed` with whether the user was unknown or the
//! password wrong (the caller is told neither) and the source address. Failed attempts
//! make later ones wait ([`super::throttle`]): an attempt that must wait is refused with
//! "too many attempts, try again in …" before any password is looked at, and is not
//! audited on its own; a `login.throttled` row is written when a user name or an address
//! starts to wait, counting the attempts refused since its previous row. The password
//! itself never reaches the log or the audit trail.
//! A refused token is audited as `login.token_refused`, counted per source address
//! (`broker::refusals`). A token is in force only while its id (`jti`) is recorded and
//! not revoked, and its user not disabled (`store::credentials`): `assist-relay user
//! disable`/`remove` revoke all of a user's tokens at once.

use super::policy::Principal;
use super::throttle::{Scope, Throttled};
use super::{Refusal, Relay};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR, clip};
use crate::auth::{AuthError, hash_password, verify_password};
use assist_proto::ids::UserName;
use assist_proto::msg::ErrorCode;
use serde_json::json;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tracing::info;

/// A hash to check unknown users' passwords against, so that a wrong user name costs as
/// much time as a wrong password and names cannot be probed by timing.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// Longest user name, in bytes, that a failed login writes into the audit log.
const MAX_LOGGED_NAME: usize = 64;

impl Relay {
    /// Checks a user's password (and, if they have an authenticator, `code`), from
    /// `source`, and issues a token.
    pub(crate) async fn login(
        &self,
        user: &str,
        password: &str,
        code: Option<&str>,
        source: IpAddr,
    ) -> Result<(Principal, String, i64), Refusal> {
        let row = self.authenticate(user, password, source).await?;
        if let Some(secret) = self.store.totp_secret(row.name.as_str()).await? {
            self.second_factor(&row, &secret, code, source).await?;
        }
        let now_secs = (crate::now_ms() / 1000) as u64;
        let (token, expires_at, jti) =
            self.tokens.issue_with_id(&row.name, &row.org, row.role, now_secs, self.cfg.token_ttl);
        let event = AuditEvent::new(row.name.as_str(), Action::LoginSucceeded)
            .org(&row.org)
            .target(row.name.as_str())
            .detail(serde_json::json!({ "role": row.role, "token_expires_at": expires_at }));
        // A login that cannot be audited (or whose token cannot be revoked) does not happen.
        self.store.record_token(&jti, row.name.as_str(), expires_at, &event, crate::now_ms()).await?;
        info!(user = %row.name, org = %row.org, role = %row.role, "login");
        Ok((Principal { user: row.name, org: row.org, role: row.role }, token, expires_at))
    }

    /// Checks a user's password, from `source`, under the throttle; audits a failure (the
    /// caller audits the success, saying what it led to).
    pub(crate) async fn authenticate(
        &self,
        user: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<crate::store::UserRow, Refusal> {
        // Throttled by the address's key (an IPv6 /64); audited with the whole address.
        let counted = crate::listen::source_key(source);
        let source = source.to_canonical();
        // The throttle keys on the name as clipped for the log, so a flood of long names
        // costs it little memory.
        let key = clip(user, MAX_LOGGED_NAME).to_lowercase();
        let admitted = match self.throttle.admit(&key, counted, std::time::Instant::now()) {
            Ok(admitted) => admitted,
            Err(wait) => {
                info!(%user, %source, "login attempt refused: must wait");
                // Whole seconds, rounded up, so "0s" is never said.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    format!("too many attempts, try again in {}", crate::fmt_secs(secs)),
                ));
            }
        };
        let name = UserName::new(user);
        let row = self.store.user(&name).await?;
        let hash = row.as_ref().map(|r| r.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_owned());
        let password = password.to_owned();
        let ok =
            tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
        // A disabled user's right password fails like a wrong one (and is audited so).
        let disabled = match &row {
            Some(r) if ok => self.store.is_disabled(r.name.as_str()).await?,
            _ => false,
        };
        let row = match row {
            Some(row) if ok && !disabled => row,
            row => {
                info!(%user, "login failed");
                // The name is whatever the client sent: bounded, so a failed login cannot
                // write much into the log.
                let mut event = AuditEvent::new(clip(user, MAX_LOGGED_NAME), Action::LoginFailed)
                    .target(clip(user, MAX_LOGGED_NAME))
                    .detail(serde_json::json!({
                        "reason": match (&row, disabled) {
                            (Some(_), true) => "user disabled",
                            (Some(_), false) => "wrong password",
                            (None, _) => "unknown user",
                        },
                        "source": source.to_string(),
                    }));
                if let Some(row) = &row {
                    event = event.org(&row.org);
                }
                let _ = self.audit(event).await;
                self.audit_throttled(&key, admitted.throttled).await;
                return Err(Refusal::new(ErrorCode::Unauthenticated, "wrong user name or password"));
            }
        };
        let still = self.throttle.succeeded(&key, counted, admitted);
        self.audit_throttled(&key, still).await;
        Ok(row)
    }

    /// Checks a code from the user's authenticator (or a recovery code) under the login
    /// throttle; a wrong one is audited `mfa.failed`.
    async fn second_factor(
        &self,
        row: &crate::store::UserRow,
        secret: &[u8],
        code: Option<&str>,
        source: IpAddr,
    ) -> Result<(), Refusal> {
        let Some(code) = code else {
            return Err(Refusal::new(ErrorCode::CodeRequired, "enter the code from your authenticator app"));
        };
        let counted = crate::listen::source_key(source);
        let key = clip(row.name.as_str(), MAX_LOGGED_NAME).to_lowercase();
        let admitted = match self.throttle.admit(&key, counted, std::time::Instant::now()) {
            Ok(admitted) => admitted,
            Err(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    format!("too many attempts, try again in {}", crate::fmt_secs(secs)),
                ));
            }
        };
        let source_text = source.to_canonical().to_string();
        let verdict = crate::mfa::check_code(
            self.store.as_ref(),
            row.name.as_str(),
            secret,
            code,
            crate::now_ms(),
            &source_text,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot check a second-factor code");
            Refusal::new(ErrorCode::Internal, "internal error in the relay (see its log)")
        })?;
        match verdict {
            None => {
                let still = self.throttle.succeeded(&key, counted, admitted);
                self.audit_throttled(&key, still).await;
                Ok(())
            }
            Some(why) => {
                let event = AuditEvent::new(row.name.as_str(), Action::MfaFailed)
                    .org(&row.org)
                    .target(row.name.as_str())
                    .detail(json!({ "reason": why, "source": source_text, "via": "cli" }));
                let _ = self.audit(event).await;
                self.audit_throttled(&key, admitted.throttled).await;
                Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    "that code is not right; wait for the next one and try again",
                ))
            }
        }
    }

    /// One `login.throttled` row per user name or address that now has to wait.
    pub(crate) async fn audit_throttled(&self, user: &str, throttled: Vec<Throttled>) {
        for t in throttled {
            let (scope, target) = match &t.scope {
                Scope::User(name) => ("user", name.clone()),
                Scope::Address(addr) => ("address", addr.to_string()),
            };
            info!(scope, %target, failures = t.failures, wait = ?t.wait, "login throttled");
            let event =
                AuditEvent::new(user, Action::LoginThrottled).target(target).detail(serde_json::json!({
                    "scope": scope,
                    "failures": t.failures,
                    "wait_secs": t.wait.as_secs_f64(),
                    "refused_since_last": t.refused,
                }));
            let _ = self.audit(event).await;
        }
    }

    /// Verifies an engineer token from `remote`. A refused token is audited
    /// (`login.token_refused`, rate-limited per source address and reason); the refused
    /// party learns only that the token was not accepted, or that it expired.
    pub(crate) async fn verify_token(&self, token: &str, remote: SocketAddr) -> Result<Principal, Refusal> {
        let source = remote.ip().to_string();
        match self.tokens.verify(token) {
            Ok(c) => {
                let in_force = match &c.jti {
                    Some(jti) => self.store.token_in_force(jti, c.sub.as_str()).await?,
                    None => false,
                };
                if in_force {
                    return Ok(Principal { user: c.sub, org: c.org, role: c.role });
                }
                info!(user = %c.sub, %remote, "revoked token refused");
                let event = AuditEvent::new(c.sub.as_str(), Action::TokenRefused)
                    .org(&c.org)
                    .target(c.sub.as_str())
                    .detail(json!({ "reason": "revoked", "remote": remote.to_string() }));
                self.audit_refused(&source, "revoked", event).await;
                Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    "your login was revoked; run assist login again",
                ))
            }
            Err(AuthError::Expired) => {
                let mut event = AuditEvent::new(RELAY_ACTOR, Action::TokenRefused)
                    .detail(json!({ "reason": "expired", "remote": remote.to_string() }));
                if let Some(c) = self.tokens.expired_claims(token) {
                    event =
                        AuditEvent { actor: c.sub.to_string(), ..event }.org(&c.org).target(c.sub.as_str());
                }
                self.audit_refused(&source, "expired", event).await;
                Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    "your login has expired; run assist login again",
                ))
            }
            Err(e) => {
                info!(error = %e, %remote, "token refused");
                let event =
                    AuditEvent::new(RELAY_ACTOR, Action::TokenRefused).target(&source).detail(json!({
                        "reason": clip(&e.to_string(), 200),
                        "remote": remote.to_string(),
                    }));
                self.audit_refused(&source, "invalid", event).await;
                Err(Refusal::new(ErrorCode::Unauthenticated, "token not accepted; run assist login again"))
            }
        }
    }
}
