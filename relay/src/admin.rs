//! The administration commands (`org`, `user`, `token`, `agent`) as library functions, so
//! that the `assist-relay` binary and the tests run the same code.
//!
//! Each takes a [`Store`] and, where it writes, the audit actor (`admin-cli[:OS_USER]`,
//! see [`crate::audit::admin_actor`]) and `now` (Unix ms); every change is stored with its
//! audit event. They validate what a person typed (names, password length, token
//! lifetime) and return typed results and [`AdminError`]s whose messages are meant for
//! that person.
//!
//! They do not print, prompt or read files: that is the binary's job.

use crate::audit::{Action, AuditEvent};
use crate::auth::{self, AuthError};
use crate::store::{AgentRow, OrgRow, Store, StoreError, UserRow};
use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, UserName, validate_name};
use serde::Serialize;
use std::time::Duration;

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long enough to copy a token to a customer machine; short enough that a token lost in a
/// ticket or chat is soon useless.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A name, or a combination of names, that cannot be used; the text says why.
    #[error("{0}")]
    Invalid(String),
    #[error("password too short: use at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("join token lifetime out of range: use between 1 minute and 30 days")]
    TtlOutOfRange { ttl: Duration },
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("{what} {name:?} does not exist")]
    NotFound { what: &'static str, name: String },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { what, name } => AdminError::Exists { what, name },
            StoreError::NotFound { what, name } => AdminError::NotFound { what, name },
            other => AdminError::Store(other),
        }
    }
}

type Result<T, E = AdminError> = std::result::Result<T, E>;

fn valid_name(kind: &str, name: &str) -> Result<()> {
    validate_name(kind, name).map_err(|e| AdminError::Invalid(e.to_string()))
}

/// An organisation, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrgView {
    pub name: OrgName,
    pub supported_by: Vec<OrgName>,
    pub created_at: i64,
}

impl From<OrgRow> for OrgView {
    fn from(r: OrgRow) -> Self {
        Self { name: r.name, supported_by: r.supported_by, created_at: r.created_at }
    }
}

/// A user, as listed: never the password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub name: UserName,
    pub org: OrgName,
    pub role: Role,
    pub created_at: i64,
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        Self { name: r.name, org: r.org, role: r.role, created_at: r.created_at }
    }
}

/// An agent, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentView {
    pub name: AgentName,
    pub org: OrgName,
    pub online: bool,
    /// The relays it is connected to (one, `default`, for a single relay).
    pub relays: Vec<String>,
    pub consent: Option<ConsentMode>,
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
    /// SHA-256 of the agent's certificate, hex.
    pub cert_fingerprint: String,
}

impl From<AgentRow> for AgentView {
    fn from(r: AgentRow) -> Self {
        Self {
            name: r.name,
            org: r.org,
            online: r.online,
            relays: r.relays,
            consent: r.consent,
            enrolled_at: r.enrolled_at,
            last_seen: r.last_seen,
            revoked_at: r.revoked_at,
            cert_fingerprint: r.cert_fingerprint,
        }
    }
}

/// Adds an organisation whose agents the engineers of `supported_by` may ask for.
pub async fn org_add(
    store: &dyn Store,
    name: &str,
    supported_by: &[String],
    actor: &str,
    now: i64,
) -> Result<OrgView> {
    valid_name("organisation", name)?;
    let mut vendors: Vec<OrgName> = Vec::with_capacity(supported_by.len());
    for vendor in supported_by {
        valid_name("organisation", vendor)?;
        if vendor == name {
            return Err(AdminError::Invalid(format!("organisation {name:?} cannot support itself")));
        }
        if !vendors.iter().any(|v| v.as_str() == vendor) {
            vendors.push(OrgName::new(vendor.as_str()));
        }
    }
    let org = OrgName::new(name);
    vendors.sort();
    let event = AuditEvent::new(actor, Action::OrgAdded)
        .org(&org)
        .target(name)
        .detail(serde_json::json!({ "supported_by": vendors }));
    store.add_org(&org, &vendors, now, &event).await?;
    Ok(OrgView { name: org, supported_by: vendors, created_at: now })
}

pub async fn org_list(store: &dyn Store) -> Result<Vec<OrgView>> {
    Ok(store.list_orgs().await?.into_iter().map(OrgView::from).collect())
}

/// Adds a user. The password is hashed here; it is never stored or logged as given.
pub async fn user_add(
    store: &dyn Store,
    name: &str,
    org: &str,
    role: Role,
    password: &str,
    actor: &str,
    now: i64,
) -> Result<UserView> {
    valid_name("user", name)?;
    valid_name("organisation", org)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AdminError::PasswordTooShort);
    }
    let password = password.to_owned();
    // Deliberately slow: keep it off the async worker threads.
    let password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))??;
    let user =
        UserRow { name: UserName::new(name), org: OrgName::new(org), role, password_hash, created_at: now };
    let event = AuditEvent::new(actor, Action::UserAdded)
        .org(&user.org)
        .target(name)
        .detail(serde_json::json!({ "role": role }));
    store.add_user(&user, &event).await?;
    Ok(user.into())
}

pub async fn user_list(store: &dyn Store) -> Result<Vec<UserView>> {
    Ok(store.list_users().await?.into_iter().map(UserView::from).collect())
}

/// Creates a single-use join token for enrolling one agent into `org`. Returns the token,
/// which exists nowhere else: only its hash is stored.
pub async fn token_create(
    store: &dyn Store,
    org: &str,
    ttl: Duration,
    actor: &str,
    now: i64,
) -> Result<String> {
    if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&ttl) {
        return Err(AdminError::TtlOutOfRange { ttl });
    }
    let org_name = OrgName::new(org);
    if store.org(&org_name).await?.is_none() {
        return Err(AdminError::NotFound { what: "organisation", name: org.to_owned() });
    }
    let token = auth::new_join_token();
    let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let hash = auth::token_hash(&token);
    // The hash's prefix names the token in the log; neither lets anyone enroll.
    let event = AuditEvent::new(actor, Action::TokenIssued)
        .org(&org_name)
        .target(format!("token:{}", hash.get(..16).unwrap_or(&hash)))
        .detail(serde_json::json!({ "expires_at": expires_at }));
    store.add_join_token(&hash, &org_name, expires_at, now, &event).await?;
    Ok(token)
}

pub async fn agent_list(store: &dyn Store) -> Result<Vec<AgentView>> {
    Ok(store.list_agents().await?.into_iter().map(AgentView::from).collect())
}

/// What [`agent_revoke`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    Revoked {
        at: i64,
    },
    /// Nothing changed: the agent had been revoked before, at `at`.
    AlreadyRevoked {
        at: i64,
    },
}

/// Revokes an agent: a relay refuses its certificate from then on.
pub async fn agent_revoke(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<Revocation> {
    let agent = AgentName::new(name);
    let Some(row) = store.agent(&agent).await? else {
        return Err(AdminError::NotFound { what: "agent", name: name.to_owned() });
    };
    if let Some(at) = row.revoked_at {
        return Ok(Revocation::AlreadyRevoked { at });
    }
    let event = AuditEvent::new(actor, Action::AgentRevoked)
        .org(&row.org)
        .target(name)
        .detail(serde_json::json!({ "fingerprint": row.cert_fingerprint }));
    store.revoke_agent(&agent, now, &event).await?;
    // Read back: if another revocation won the race, its time is the one that counts.
    let at = store.agent(&agent).await?.and_then(|a| a.revoked_at).unwrap_or(now);
    Ok(Revocation::Revoked { at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, TokenProblem};

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
        org_add(&store, "vendor", &[], "admin-cli", 1).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn orgs() {
        let (_dir, store) = open().await;
        let acme =
            org_add(&store, "acme", &["vendor".into(), "vendor".into()], "admin-cli", 2).await.unwrap();
        assert_eq!(acme.supported_by, [OrgName::new("vendor")]);
        assert_eq!(org_list(&store).await.unwrap()[0], acme);
        let err = org_add(&store, "acme", &[], "admin-cli", 3).await.unwrap_err();
        assert_eq!(err.to_string(), r#"organisation "acme" already exists"#);
        let err = org_add(&store, "beta", &["ghost".into()], "admin-cli", 3).await.unwrap_err();
        assert_eq!(err.to_string(), r#"organisation "ghost" does not exist"#);
        assert!(matches!(
            org_add(&store, "beta", &["beta".into()], "admin-cli", 3).await,
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(org_add(&store, "-bad", &[], "admin-cli", 3).await, Err(AdminError::Invalid(_))));
        assert_eq!(org_list(&store).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn users() {
        let (_dir, store) = open().await;
        let alice =
            user_add(&store, "alice", "vendor", Role::Engineer, "long enough", "admin-cli", 5).await.unwrap();
        assert_eq!((alice.org.as_str(), alice.role), ("vendor", Role::Engineer));
        let hash = store.user(&alice.name).await.unwrap().unwrap().password_hash;
        assert!(auth::verify_password("long enough", &hash));
        assert!(matches!(
            user_add(&store, "alice", "vendor", Role::Admin, "long enough", "admin-cli", 6).await,
            Err(AdminError::Exists { what: "user", .. })
        ));
        assert!(matches!(
            user_add(&store, "bob", "ghost", Role::Admin, "long enough", "admin-cli", 6).await,
            Err(AdminError::NotFound { what: "organisation", .. })
        ));
        assert!(matches!(
            user_add(&store, "bob", "vendor", Role::Admin, "short", "admin-cli", 6).await,
            Err(AdminError::PasswordTooShort)
        ));
        assert!(matches!(
            user_add(&store, "b b", "vendor", Role::Admin, "long enough", "admin-cli", 6).await,
            Err(AdminError::Invalid(_))
        ));
        assert_eq!(user_list(&store).await.unwrap(), [alice]);
    }

    #[tokio::test]
    async fn tokens_enroll_and_agents_are_revoked_once() {
        let (_dir, store) = open().await;
        for bad in [Duration::from_secs(59), MAX_TOKEN_TTL + Duration::from_secs(1)] {
            assert!(matches!(
                token_create(&store, "vendor", bad, "admin-cli", 0).await,
                Err(AdminError::TtlOutOfRange { .. })
            ));
        }
        assert!(matches!(
            token_create(&store, "ghost", MIN_TOKEN_TTL, "admin-cli", 0).await,
            Err(AdminError::NotFound { what: "organisation", .. })
        ));
        token_create(&store, "vendor", MAX_TOKEN_TTL, "admin-cli", 0).await.unwrap();
        let token = token_create(&store, "vendor", MIN_TOKEN_TTL, "admin-cli", 1_000).await.unwrap();
        let hash = auth::token_hash(&token);

        let row = AgentRow {
            name: "db01".into(),
            org: "ignored".into(),
            cert_fingerprint: "f1".into(),
            enrolled_at: 2_000,
            revoked_at: None,
            last_seen: None,
            consent: None,
            online: false,
            relays: Vec::new(),
        };
        let enrolled = AuditEvent::new("agent:db01", Action::AgentEnrolled);
        let late = store.enroll_agent(&hash, &row, 61_000, &enrolled).await;
        assert!(matches!(late, Err(StoreError::TokenRejected(TokenProblem::Expired))));
        store.enroll_agent(&hash, &row, 60_999, &enrolled).await.unwrap();
        let listed = agent_list(&store).await.unwrap();
        assert_eq!((listed[0].org.as_str(), listed[0].revoked_at), ("vendor", None));

        assert_eq!(
            agent_revoke(&store, "db01", "admin-cli", 5_000).await.unwrap(),
            Revocation::Revoked { at: 5_000 }
        );
        assert_eq!(
            agent_revoke(&store, "db01", "admin-cli", 6_000).await.unwrap(),
            Revocation::AlreadyRevoked { at: 5_000 }
        );
        let err = agent_revoke(&store, "ghost", "admin-cli", 1).await.unwrap_err();
        assert_eq!(err.to_string(), r#"agent "ghost" does not exist"#);
    }

    #[tokio::test]
    async fn admin_actions_are_audited_with_who_ran_them() {
        let (_dir, store) = open().await;
        let root = crate::audit::admin_actor(Some("root"));
        org_add(&store, "acme", &["vendor".into()], &root, 2).await.unwrap();
        user_add(&store, "bob", "acme", Role::Approver, "long enough", &root, 3).await.unwrap();
        let token = token_create(&store, "acme", MIN_TOKEN_TTL, &root, 4).await.unwrap();
        assert!(org_add(&store, "acme", &[], &root, 5).await.is_err());
        let events = store.list_audit(&crate::audit::AuditFilter::default()).await.unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.actor.as_str(), e.action.as_str(), e.org.as_deref(), e.target.as_deref(), e.at))
            .collect();
        let token_target = format!("token:{}", &auth::token_hash(&token)[..16]);
        assert_eq!(
            seen,
            [
                ("admin-cli", "org.added", Some("vendor"), Some("vendor"), 1),
                ("admin-cli:root", "org.added", Some("acme"), Some("acme"), 2),
                ("admin-cli:root", "user.added", Some("acme"), Some("bob"), 3),
                ("admin-cli:root", "token.issued", Some("acme"), Some(token_target.as_str()), 4),
            ]
        );
        assert_eq!(events[1].detail, r#"{"supported_by":["vendor"]}"#);
        assert_eq!(events[2].detail, r#"{"role":"approver"}"#);
        assert!(!events.iter().any(|e| e.detail.contains("long enough") || e.detail.contains(&token)));
    }
}
