//! `assist-relay user role|reset-password|enable`, `org support|unsupport` and `token
//! list` as library functions (see [`crate::admin`] for the conventions), shared by the
//! binary and the console's admin pages.
//!
//! A new role or a reset password ends the user's console sessions and CLI tokens at
//! once, in the same transaction as its audit event (as `user disable` does), so nobody
//! keeps a role or a password that was taken away. A reset password is made here and
//! returned once; only its hash is stored. Removing a support relation does not end
//! sessions already granted: an approver or admin ends those (`assist end`).

use crate::admin::AdminError;
use crate::audit::{Action, AuditEvent};
use crate::auth::{self, AuthError};
use crate::store::Store;
use crate::store::accounts::JoinTokenRow;
use assist_proto::caps::Role;
use assist_proto::ids::{OrgName, UserName, validate_name};

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Join tokens listed, at most.
pub const TOKENS_LISTED: u32 = 200;

fn valid(kind: &str, name: &str) -> Result<()> {
    validate_name(kind, name).map_err(|e| AdminError::Invalid(e.to_string()))
}

fn no_user(name: &str) -> AdminError {
    AdminError::NotFound { what: "user", name: name.to_owned() }
}

async fn user_row(store: &dyn Store, name: &str) -> Result<crate::store::UserRow> {
    valid("user", name)?;
    store.user(&UserName::new(name)).await?.ok_or_else(|| no_user(name))
}

/// Gives a user another role. Returns false when they had it already (nothing changes).
pub async fn user_set_role(store: &dyn Store, name: &str, role: Role, actor: &str, now: i64) -> Result<bool> {
    let row = user_row(store, name).await?;
    if row.role == role {
        return Ok(false);
    }
    let event = AuditEvent::new(actor, Action::UserRoleChanged)
        .org(&row.org)
        .target(name)
        .detail(serde_json::json!({ "from": row.role, "to": role }));
    if !store.set_role(name, role, &event, now).await? {
        return Err(no_user(name));
    }
    Ok(true)
}

/// Gives a user a new random password and returns it (shown once, stored hashed).
pub async fn user_reset_password(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<String> {
    let row = user_row(store, name).await?;
    let password = auth::new_password();
    let given = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&given))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))??;
    let event = AuditEvent::new(actor, Action::PasswordSet)
        .org(&row.org)
        .target(name)
        .detail(serde_json::json!({ "reason": "reset by an administrator" }));
    if !store.reset_password(name, &hash, &event, now).await? {
        return Err(no_user(name));
    }
    Ok(password)
}

/// Lets a disabled user sign in again. Returns false when they were not disabled.
pub async fn user_enable(store: &dyn Store, name: &str, actor: &str, now: i64) -> Result<bool> {
    let row = user_row(store, name).await?;
    let event = AuditEvent::new(actor, Action::UserEnabled)
        .org(&row.org)
        .target(name)
        .detail(serde_json::json!({ "role": row.role }));
    Ok(store.enable_user(name, &event, now).await?)
}

/// Adds (`on`) or removes "`vendor` supports `customer`". Returns false when it was
/// already so.
pub async fn org_support(
    store: &dyn Store,
    customer: &str,
    vendor: &str,
    on: bool,
    actor: &str,
    now: i64,
) -> Result<bool> {
    valid("organisation", customer)?;
    valid("organisation", vendor)?;
    if customer == vendor {
        return Err(AdminError::Invalid(format!("organisation {customer:?} cannot support itself")));
    }
    let (customer, vendor) = (OrgName::new(customer), OrgName::new(vendor));
    let action = if on { Action::OrgSupportAdded } else { Action::OrgSupportRemoved };
    let event = AuditEvent::new(actor, action)
        .org(&customer)
        .target(customer.as_str())
        .detail(serde_json::json!({ "vendor": vendor }));
    Ok(store.set_support(&customer, &vendor, on, &event, now).await?)
}

/// Join tokens issued (never the tokens: a prefix of their hash), newest first.
pub async fn token_list(store: &dyn Store) -> Result<Vec<JoinTokenRow>> {
    Ok(store.list_join_tokens(TOKENS_LISTED).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin;
    use crate::store::SqliteStore;
    use crate::store::credentials::Credentials as _;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
        admin::org_add(&store, "vendor", &[], "admin-cli", 1).await.unwrap();
        admin::org_add(&store, "acme", &[], "admin-cli", 1).await.unwrap();
        admin::user_add(&store, "bob", "acme", Role::Approver, "long enough", "admin-cli", 2).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn roles_and_passwords_change_and_end_the_users_tokens() {
        let (_dir, store) = open().await;
        let login = AuditEvent::new("bob", Action::LoginSucceeded);
        store.record_token("j1", "bob", i64::MAX, &login, 3).await.unwrap();
        assert!(user_set_role(&store, "bob", Role::Admin, "root", 4).await.unwrap());
        assert!(!user_set_role(&store, "bob", Role::Admin, "root", 5).await.unwrap());
        assert_eq!(store.user(&"bob".into()).await.unwrap().unwrap().role, Role::Admin);
        assert!(!store.token_in_force("j1", "bob").await.unwrap());

        store.record_token("j2", "bob", i64::MAX, &login, 6).await.unwrap();
        let password = user_reset_password(&store, "bob", "root", 7).await.unwrap();
        let hash = store.user(&"bob".into()).await.unwrap().unwrap().password_hash;
        assert!(auth::verify_password(&password, &hash) && !auth::verify_password("long enough", &hash));
        assert!(!store.token_in_force("j2", "bob").await.unwrap());
        assert!(matches!(
            user_reset_password(&store, "ghost", "root", 8).await,
            Err(AdminError::NotFound { what: "user", .. })
        ));

        let events = store.list_audit(&crate::audit::AuditFilter::default()).await.unwrap();
        let changes: Vec<_> = events
            .iter()
            .map(|e| e.action.as_str())
            .filter(|a| a.starts_with("user.") && *a != "user.added")
            .collect();
        assert_eq!(changes, ["user.role_changed", "user.password_set"]);
        assert!(!events.iter().any(|e| e.detail.contains(&password)));
    }

    #[tokio::test]
    async fn a_disabled_user_is_enabled_once() {
        let (_dir, store) = open().await;
        assert!(!user_enable(&store, "bob", "root", 3).await.unwrap());
        crate::admin_users::user_disable(&store, "bob", "root", 4).await.unwrap();
        assert!(store.is_disabled("bob").await.unwrap());
        assert!(user_enable(&store, "bob", "root", 5).await.unwrap());
        assert!(!store.is_disabled("bob").await.unwrap());
    }

    #[tokio::test]
    async fn support_relations_are_added_and_removed() {
        let (_dir, store) = open().await;
        assert!(org_support(&store, "acme", "vendor", true, "root", 3).await.unwrap());
        assert!(!org_support(&store, "acme", "vendor", true, "root", 4).await.unwrap());
        let acme = store.org(&"acme".into()).await.unwrap().unwrap();
        assert_eq!(acme.supported_by, [OrgName::new("vendor")]);
        assert!(org_support(&store, "acme", "vendor", false, "root", 5).await.unwrap());
        assert!(store.org(&"acme".into()).await.unwrap().unwrap().supported_by.is_empty());
        assert!(matches!(
            org_support(&store, "acme", "ghost", true, "root", 6).await,
            Err(AdminError::NotFound { what: "organisation", .. })
        ));
        assert!(matches!(
            org_support(&store, "acme", "acme", true, "root", 6).await,
            Err(AdminError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn tokens_are_listed_by_hash_prefix_only() {
        let (_dir, store) = open().await;
        let token = admin::token_create(&store, "acme", admin::MIN_TOKEN_TTL, "root", 10).await.unwrap();
        let listed = token_list(&store).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, &auth::token_hash(&token)[..16]);
        assert_eq!((listed[0].org.as_str(), listed[0].used_at), ("acme", None));
    }
}
