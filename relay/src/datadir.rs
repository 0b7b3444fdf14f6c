//! The relay's data directory, and its creation on first start.
//!
//! ```text
//! ca.pem  ca.key          the relay CA (signs the server and every agent certificate)
//! server.pem  server.key  the server certificate, then the CA certificate; its key
//! token.key               Ed25519 PKCS#8 PEM: signs engineer tokens (JWT)
//! grant.key               Ed25519 PKCS#8 PEM: signs session grants
//! assist.db               SQLite: organisations, users, agents, sessions
//! totp.key                32 random bytes (hex): seals the TOTP secrets in assist.db
//! ```
//!
//! The directory is mode 0700 and every file 0600, written atomically (temporary file,
//! fsync, rename). A first start builds everything in `.init/` and then moves it in with
//! the database last, so "assist.db exists" means "the start completed": a start that
//! was interrupted is finished (or begun again) on the next one. Once a database exists
//! the CA, `grant.key` and `token.key` are never regenerated, because enrolled agents and
//! clients that pinned the CA would be cut off: a missing file is an error that says so.
//! Only the server certificate, which the CA can always re-issue, is recreated.
//! `totp.key` is created by the relay's start if missing (directories made before it
//! existed get it then; administration commands never create it), never replaced, and
//! TOTP secrets stored in clear are sealed with it when the database is opened
//! ([`crate::store::sealed`]). Lose it and every
//! authenticator must be set up again: back it up with the database.
//!
//! With `--database URL` ([`DataDir::with_database`]) the state and audit log live in that
//! database instead (PostgreSQL): the keys stay here, `assist.db` is still made at the
//! first start (it marks the start completed) but holds nothing the relay then uses, and
//! the first administrator is made in the new database at its first start
//! ([`DataDir::first_start_database`]).
//!
//! It does not watch the files, and does not rotate or back up anything.

use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::auth::{self, AuthError, TokenKeys};
use crate::cluster::bundle::Bundle;
use crate::store::{SqliteStore, Store, StoreError, UserRow};
use assist_certs::{Ca, CertError, Fingerprint};
use assist_proto::caps::Role;
use assist_proto::ids::{OrgName, UserName};
use aws_lc_rs::signature::Ed25519KeyPair;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const TOKEN_KEY: &str = "token.key";
pub const GRANT_KEY: &str = "grant.key";
pub const DATABASE: &str = "assist.db";
/// Seals TOTP secrets at rest; not in [`FILES`]: created lazily, so directories made
/// before it existed stay complete.
pub const SECRETS_KEY: &str = "totp.key";
/// Where a first start builds everything before moving it in.
const STAGING: &str = ".init";
const FILES: [&str; 6] = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, TOKEN_KEY, GRANT_KEY];

/// The organisation and user created on first start.
pub const OPERATOR_ORG: &str = "operator";
pub const FIRST_ADMIN: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    // Not `source`: the message already says it, and error chains would say it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{} is not an assist data directory; start the relay once with `assist-relay serve --data-dir {}` to create it",
        path.display(), path.display()
    )]
    NotInitialised { path: PathBuf },
    #[error(
        "the first start of the relay in {} was interrupted; start it once more with `assist-relay serve --data-dir {}` to finish it",
        path.display(), path.display()
    )]
    Interrupted { path: PathBuf },
    #[error(
        "data directory {} is incomplete: {} missing. Restore from a backup; the relay does not create new keys next to an existing database, because every enrolled agent and every client that pinned the CA would stop trusting it",
        path.display(), missing.join(", ")
    )]
    Incomplete { path: PathBuf, missing: Vec<&'static str> },
    #[error(
        "data directory {} holds relay keys but no {DATABASE}: restore the database from a backup, or move the directory away to start a new relay (every agent would have to enroll again)",
        path.display()
    )]
    NoDatabase { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error(
        "data directory {} holds keys other than the cluster bundle's ({}): it belongs to another relay or cluster. Start this relay with an empty --data-dir (it then takes the bundle's keys), or use the bundle that directory was made with; nothing was changed",
        path.display(), differ.join(", ")
    )]
    NotThisCluster { path: PathBuf, differ: Vec<&'static str> },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

type Result<T, E = DataDirError> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |error| DataDirError::Io { path: path.to_owned(), error }
}

/// The administrator created on first start, to be shown once.
pub struct FirstAdmin {
    pub user: UserName,
    pub password: String,
}

impl fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstAdmin").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A loaded, checked data directory.
#[derive(Clone)]
pub struct DataDir {
    path: PathBuf,
    ca_cert_pem: String,
    ca_key_pem: String,
    ca_fingerprint: Fingerprint,
    server_chain_pem: String,
    server_key_pem: String,
    token_keys: TokenKeys,
    grant_pkcs8: Vec<u8>,
    /// Where the state is kept when not in this directory's `assist.db`
    /// ([`crate::store::open`]'s URL).
    database: Option<String>,
    /// The relay's name in a cluster (`--relay-name`); the store's sessions are its own.
    relay_name: Option<String>,
}

impl fmt::Debug for DataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataDir")
            .field("path", &self.path)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

impl DataDir {
    /// Opens the data directory, creating it on first start. Returns the first
    /// administrator's credentials when it created them (or finished a first start that
    /// was interrupted, with a new password, since the old one was never shown).
    ///
    /// `extra_server_names` go into the server certificate when it is issued; later
    /// starts keep the existing certificate.
    pub async fn init_or_open(
        path: &Path,
        extra_server_names: &[String],
    ) -> Result<(DataDir, Option<FirstAdmin>)> {
        let opened = Self::init_or_open_keys(path, extra_server_names, None).await?;
        // Made by the relay, never by an administration command: one run as another OS
        // user would leave a key the relay cannot read.
        secrets_key(path, true)?;
        Ok(opened)
    }

    /// [`DataDir::init_or_open`] for a relay of a cluster: a first start takes the
    /// bundle's keys (the CA, token, grant and secrets keys) instead of making new ones and
    /// issues this relay's own server certificate from the bundle's CA; a later start
    /// checks that the directory's keys are the bundle's and refuses the directory,
    /// changing nothing, if one differs.
    pub async fn init_or_open_cluster(
        path: &Path,
        extra_server_names: &[String],
        bundle: &Bundle,
    ) -> Result<(DataDir, Option<FirstAdmin>)> {
        if path.is_dir() {
            check_bundle(path, bundle)?;
        }
        let opened = Self::init_or_open_keys(path, extra_server_names, Some(bundle)).await?;
        check_bundle(path, bundle)?;
        if !path.join(SECRETS_KEY).exists() {
            write_atomic(path, SECRETS_KEY, format!("{}\n", bundle.secrets_key.trim()).as_bytes())?;
        }
        check_bundle(path, bundle)?;
        Ok(opened)
    }

    async fn init_or_open_keys(
        path: &Path,
        extra_server_names: &[String],
        bundle: Option<&Bundle>,
    ) -> Result<(DataDir, Option<FirstAdmin>)> {
        create_private_dir(path)?;
        let staging = path.join(STAGING);
        if staging.join(DATABASE).exists() {
            install(&staging, path)?;
            let dir = load(path)?;
            tracing::warn!("finished a first start of {} that had been interrupted", path.display());
            let admin = dir.reset_first_admin().await?;
            return Ok((dir, Some(admin)));
        }
        if staging.exists() {
            // Interrupted while generating: nothing was moved in yet, so start over.
            fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
        }
        let missing = missing_files(path);
        if missing.len() == FILES.len() + 1 {
            let password = generate(&staging, extra_server_names, bundle).await?;
            install(&staging, path)?;
            let dir = load(path)?;
            tracing::info!(ca = %dir.ca_fingerprint, "created data directory {}", path.display());
            return Ok((dir, Some(FirstAdmin { user: UserName::new(FIRST_ADMIN), password })));
        }
        if !missing.is_empty() && missing.iter().all(|m| matches!(*m, SERVER_CERT | SERVER_KEY)) {
            let ca = load_ca(path)?;
            write_server_cert(path, &ca, extra_server_names)?;
            tracing::warn!("re-issued the server certificate in {} (it was missing)", path.display());
        } else if !extra_server_names.is_empty() {
            tracing::info!(
                "server names are fixed when the server certificate is issued; to change them, remove {SERVER_CERT} and {SERVER_KEY} and start again with --server-name"
            );
        }
        Ok((open_complete(path)?, None))
    }

    /// Opens an existing data directory, for the administration commands.
    pub fn open(path: &Path) -> Result<DataDir> {
        if !path.is_dir() {
            return Err(DataDirError::NotInitialised { path: path.to_owned() });
        }
        if path.join(STAGING).join(DATABASE).exists() {
            return Err(DataDirError::Interrupted { path: path.to_owned() });
        }
        if missing_files(path).len() == FILES.len() + 1 {
            return Err(DataDirError::NotInitialised { path: path.to_owned() });
        }
        open_complete(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // The key accessors return `Result` although everything was checked when the
    // directory was loaded: keys may later live elsewhere (a KMS, a secrets store), and
    // callers should already handle that failing.

    pub fn ca(&self) -> Result<Ca> {
        Ok(Ca::from_pem(&self.ca_cert_pem, &self.ca_key_pem)?)
    }

    pub fn ca_fingerprint(&self) -> Fingerprint {
        self.ca_fingerprint
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The server certificate followed by the CA certificate, PEM.
    pub fn server_chain_pem(&self) -> Result<String> {
        Ok(self.server_chain_pem.clone())
    }

    pub fn server_key_pem(&self) -> Result<String> {
        Ok(self.server_key_pem.clone())
    }

    /// Engineer token keys; the issuer names this relay by its CA fingerprint.
    pub fn token_keys(&self) -> Result<TokenKeys> {
        Ok(self.token_keys.clone())
    }

    /// The key that signs session grants.
    pub fn grant_key(&self) -> Result<Ed25519KeyPair> {
        Ed25519KeyPair::from_pkcs8(&self.grant_pkcs8).map_err(|e| bad_file(&self.path, GRANT_KEY, e))
    }

    /// This directory, with its state kept at `database` (a `postgres://…` or
    /// `sqlite://PATH` URL) instead of its own `assist.db`. The keys stay here either way.
    pub fn with_database(mut self, database: Option<String>) -> Self {
        self.database = database;
        self
    }

    /// This directory, its store writing for the relay named `name` of a cluster
    /// ([`crate::store::relays`]).
    pub fn with_relay_name(mut self, name: Option<String>) -> Self {
        self.relay_name = name;
        self
    }

    /// The relay's name given to [`DataDir::with_relay_name`], if any.
    pub fn relay_name(&self) -> Option<&str> {
        self.relay_name.as_deref()
    }

    /// The database URL given to [`DataDir::with_database`], if any.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Opens the database (each call opens its own connection pool).
    /// TOTP secrets are sealed with `totp.key` when it exists (the relay makes it at
    /// start); any stored in clear are sealed now. Without it (an administration command
    /// before an upgraded relay first started) the store reads and writes no TOTP secret.
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        let key = match secrets_key(&self.path, false)? {
            Some(key) => Some(
                crate::store::sealed::SecretsKey::new(&key)
                    .map_err(|e| bad_file(&self.path, SECRETS_KEY, e))?,
            ),
            None => None,
        };
        let relay = self.relay_name.as_deref().unwrap_or(crate::store::relays::DEFAULT_RELAY);
        Ok(crate::store::open_for(self.database.as_deref(), &self.path, key, relay).await?)
    }

    /// The first start of a database named by [`DataDir::with_database`]: when it holds
    /// no operator organisation yet, creates it and the first administrator, and returns
    /// their credentials. `None` for a database already set up (by this relay or another
    /// one sharing it) or for the data directory's own file (set up with the directory).
    pub async fn first_start_database(&self) -> Result<Option<FirstAdmin>> {
        if self.database.is_none() {
            return Ok(None);
        }
        let store = self.store().await?;
        let created = match store.org(&OrgName::new(OPERATOR_ORG)).await? {
            Some(_) => None,
            None => match seed_operator(store.as_ref()).await {
                Ok(password) => Some(FirstAdmin { user: UserName::new(FIRST_ADMIN), password }),
                // Another relay on the same database got there first.
                Err(DataDirError::Store(StoreError::Exists { .. })) => None,
                Err(e) => return Err(e),
            },
        };
        store.close().await;
        Ok(created)
    }

    async fn reset_first_admin(&self) -> Result<FirstAdmin> {
        let password = auth::new_password();
        let user = UserName::new(FIRST_ADMIN);
        let store = self.store().await?;
        let event = AuditEvent::new(RELAY_ACTOR, Action::PasswordSet)
            .org(&OrgName::new(OPERATOR_ORG))
            .target(FIRST_ADMIN)
            .detail(serde_json::json!({ "reason": "first start completed after an interruption" }));
        store.set_password(&user, &auth::hash_password(&password)?, crate::now_ms(), &event).await?;
        store.close().await;
        Ok(FirstAdmin { user, password })
    }
}

/// The shared keys in `path` that are present and differ from the bundle's; an error
/// naming them if any does.
fn check_bundle(path: &Path, bundle: &Bundle) -> Result<()> {
    let same = |name: &str, theirs: &str| match fs::read_to_string(path.join(name)) {
        Ok(ours) => ours.trim() == theirs.trim(),
        Err(_) => true,
    };
    let differ: Vec<&'static str> = [
        (CA_CERT, &bundle.ca_cert),
        (CA_KEY, &bundle.ca_key),
        (TOKEN_KEY, &bundle.token_key),
        (GRANT_KEY, &bundle.grant_key),
        (SECRETS_KEY, &bundle.secrets_key),
    ]
    .into_iter()
    .filter(|(name, theirs)| !same(name, theirs))
    .map(|(name, _)| name)
    .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(DataDirError::NotThisCluster { path: path.to_owned(), differ })
    }
}

fn missing_files(path: &Path) -> Vec<&'static str> {
    FILES.iter().chain([&DATABASE]).copied().filter(|f| !path.join(f).exists()).collect()
}

fn open_complete(path: &Path) -> Result<DataDir> {
    let missing = missing_files(path);
    if missing.contains(&DATABASE) {
        return Err(DataDirError::NoDatabase { path: path.to_owned() });
    }
    if !missing.is_empty() {
        return Err(DataDirError::Incomplete { path: path.to_owned(), missing });
    }
    warn_if_readable_by_others(path);
    load(path)
}

fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    fs::read_to_string(&path).map_err(io_error(&path))
}

/// The key of `totp.key`; created (0600) if the file is missing and `create`. Two
/// processes starting at once both end up with the one file linked into place first.
fn secrets_key(dir: &Path, create: bool) -> Result<Option<Vec<u8>>> {
    let path = dir.join(SECRETS_KEY);
    if !path.exists() {
        if !create {
            return Ok(None);
        }
        let tmp = dir.join(format!(".{SECRETS_KEY}.tmp-{}", std::process::id()));
        let key = assist_certs::random_bytes::<{ crate::store::sealed::KEY_LEN }>();
        let written = write_private_new(&tmp, format!("{}\n", hex::encode(key)).as_bytes())
            .and_then(|()| match fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            })
            .and_then(|()| File::open(dir)?.sync_all());
        let _ = fs::remove_file(&tmp);
        written.map_err(io_error(&path))?;
    }
    let text = fs::read_to_string(&path).map_err(io_error(&path))?;
    let key = hex::decode(text.trim()).map_err(|e| bad_file(dir, SECRETS_KEY, e))?;
    if key.len() != crate::store::sealed::KEY_LEN {
        return Err(bad_file(dir, SECRETS_KEY, "not a 32-byte key"));
    }
    Ok(Some(key))
}

fn write_private_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = private_file_options().open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn bad_file(dir: &Path, name: &str, reason: impl fmt::Display) -> DataDirError {
    DataDirError::BadFile { path: dir.join(name), reason: reason.to_string() }
}

fn load_ca(path: &Path) -> Result<Ca> {
    Ca::from_pem(&read(path, CA_CERT)?, &read(path, CA_KEY)?).map_err(|e| bad_file(path, CA_CERT, e))
}

fn load(path: &Path) -> Result<DataDir> {
    let ca = load_ca(path)?;
    let server_chain_pem = read(path, SERVER_CERT)?;
    let chain =
        assist_certs::certs_from_pem(&server_chain_pem).map_err(|e| bad_file(path, SERVER_CERT, e))?;
    if chain.last().map(|c| Fingerprint::of_der(c)) != Some(ca.fingerprint()) || chain.len() < 2 {
        return Err(bad_file(
            path,
            SERVER_CERT,
            format!("expected the server certificate followed by {CA_CERT}"),
        ));
    }
    let server_key_pem = read(path, SERVER_KEY)?;
    assist_certs::key_from_pem(&server_key_pem).map_err(|e| bad_file(path, SERVER_KEY, e))?;
    let issuer = format!("assist-relay:{}", &ca.fingerprint().hex()[..16]);
    let token_keys =
        TokenKeys::from_pem(&read(path, TOKEN_KEY)?, issuer).map_err(|e| bad_file(path, TOKEN_KEY, e))?;
    let (grant_pkcs8, _) =
        auth::ed25519_from_pem(&read(path, GRANT_KEY)?).map_err(|e| bad_file(path, GRANT_KEY, e))?;
    Ok(DataDir {
        path: path.to_owned(),
        ca_cert_pem: ca.cert_pem().to_owned(),
        ca_key_pem: ca.key_pem().to_owned(),
        ca_fingerprint: ca.fingerprint(),
        server_chain_pem,
        server_key_pem,
        token_keys,
        grant_pkcs8,
        database: None,
        relay_name: None,
    })
}

/// Builds a complete data directory in `staging` (database last) and returns the first
/// administrator's password.
/// With a cluster `bundle`, its keys are used instead of new ones.
async fn generate(staging: &Path, extra_server_names: &[String], bundle: Option<&Bundle>) -> Result<String> {
    create_private_dir(staging)?;
    let (ca, token_pem, grant_pem) = match bundle {
        Some(b) => (Ca::from_pem(&b.ca_cert, &b.ca_key)?, b.token_key.clone(), b.grant_key.clone()),
        None => (Ca::generate("assist relay")?, TokenKeys::generate_pem(), auth::ed25519_pkcs8_pem()),
    };
    write_atomic(staging, CA_KEY, ca.key_pem().as_bytes())?;
    write_atomic(staging, CA_CERT, ca.cert_pem().as_bytes())?;
    write_server_cert(staging, &ca, extra_server_names)?;
    write_atomic(staging, TOKEN_KEY, token_pem.as_bytes())?;
    write_atomic(staging, GRANT_KEY, grant_pem.as_bytes())?;

    let db = staging.join(DATABASE);
    // Created here so that it gets mode 0600; SQLite gives its -wal and -shm files the
    // database's mode.
    private_file_options().open(&db).map_err(io_error(&db))?;
    let store = SqliteStore::open(&db).await?;
    let password = seed_operator(&store).await?;
    // Closing the last connection checkpoints the WAL into assist.db, so the one file
    // moved last holds everything.
    store.close().await;
    sync_dir(staging)?;
    Ok(password)
}

/// Creates the operator organisation and the first administrator; returns their
/// password.
async fn seed_operator(store: &dyn Store) -> Result<String> {
    let password = auth::new_password();
    let now = crate::now_ms();
    let operator = OrgName::new(OPERATOR_ORG);
    let org_event = AuditEvent::new(RELAY_ACTOR, Action::OrgAdded)
        .org(&operator)
        .target(OPERATOR_ORG)
        .detail(serde_json::json!({ "supported_by": [], "first_start": true }));
    store.add_org(&operator, &[], now, &org_event).await?;
    let user_event = AuditEvent::new(RELAY_ACTOR, Action::UserAdded)
        .org(&operator)
        .target(FIRST_ADMIN)
        .detail(serde_json::json!({ "role": Role::Admin, "first_start": true }));
    let admin = UserRow {
        name: UserName::new(FIRST_ADMIN),
        org: operator,
        role: Role::Admin,
        password_hash: auth::hash_password(&password)?,
        created_at: now,
    };
    store.add_user(&admin, &user_event).await?;
    Ok(password)
}

fn write_server_cert(dir: &Path, ca: &Ca, extra_server_names: &[String]) -> Result<()> {
    let server = ca.issue_server(assist_proto::RELAY_SERVER_NAME, extra_server_names)?;
    write_atomic(dir, SERVER_KEY, server.key_pem.as_bytes())?;
    write_atomic(dir, SERVER_CERT, format!("{}{}", server.cert_pem, ca.cert_pem()).as_bytes())
}

/// Moves a generated directory into place, the database last.
fn install(staging: &Path, path: &Path) -> Result<()> {
    if path.join(DATABASE).exists() {
        return Err(DataDirError::BadFile {
            path: staging.to_owned(),
            reason: format!("left over from a first start, but {DATABASE} already exists: remove it by hand"),
        });
    }
    let wal = [format!("{DATABASE}-wal"), format!("{DATABASE}-shm")];
    for name in FILES.iter().copied().chain(wal.iter().map(String::as_str)).chain([DATABASE]) {
        let from = staging.join(name);
        if from.exists() {
            fs::rename(&from, path.join(name)).map_err(io_error(&from))?;
        }
    }
    sync_dir(path)?;
    fs::remove_dir_all(staging).map_err(io_error(staging))?;
    sync_dir(path)
}

fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `dir/name` so that it is either the old file or the whole new one.
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = private_file_options().open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error(&tmp))?;
    let target = dir.join(name);
    fs::rename(&tmp, &target).map_err(io_error(&target))?;
    sync_dir(dir)
}

/// Makes a rename durable: the new directory entry is on disk once this returns.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
    Ok(())
}

fn create_private_dir(path: &Path) -> Result<()> {
    if path.exists() {
        if !path.is_dir() {
            return Err(DataDirError::BadFile { path: path.to_owned(), reason: "not a directory".into() });
        }
        // An empty directory made for us (by hand, or as a volume) becomes private; a
        // directory that holds other things is left as it is, and warned about later.
        #[cfg(unix)]
        if fs::read_dir(path).map_err(io_error(path))?.next().is_none() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error(path))?;
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io_error(path))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    for name in [".", CA_KEY, SERVER_KEY, TOKEN_KEY, GRANT_KEY, DATABASE] {
        use std::os::unix::fs::PermissionsExt;
        let file = path.join(name);
        if let Ok(meta) = fs::metadata(&file)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} is accessible to other users; it should be private (chmod go-rwx)",
                file.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn copy_dir(from: &Path, to: &Path, names: &[&str]) {
        fs::create_dir_all(to).unwrap();
        for name in names {
            fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }

    #[tokio::test]
    async fn first_start_creates_everything_and_later_starts_load_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        let (dir, admin) = DataDir::init_or_open(&path, &["relay.example.test".into()]).await.unwrap();
        let admin = admin.expect("first start creates an admin");
        assert_eq!(admin.user.as_str(), FIRST_ADMIN);
        assert_eq!(mode(&path), 0o700);
        for name in FILES.iter().chain([&DATABASE]) {
            assert_eq!(mode(&path.join(name)), 0o600, "{name}");
        }
        assert!(!path.join(STAGING).exists());

        let store = dir.store().await.unwrap();
        let user = store.user(&admin.user).await.unwrap().unwrap();
        assert_eq!((user.org.as_str(), user.role), (OPERATOR_ORG, Role::Admin));
        assert!(auth::verify_password(&admin.password, &user.password_hash));
        assert_eq!(assist_certs::certs_from_pem(&dir.server_chain_pem().unwrap()).unwrap().len(), 2);
        assert!(dir.token_keys().unwrap().issuer().starts_with("assist-relay:"));
        dir.grant_key().unwrap();

        let (again, none) = DataDir::init_or_open(&path, &[]).await.unwrap();
        assert!(none.is_none());
        assert_eq!(again.ca_fingerprint(), dir.ca_fingerprint());
        assert_eq!(DataDir::open(&path).unwrap().ca_fingerprint(), dir.ca_fingerprint());
        assert_eq!(again.token_keys().unwrap().issuer(), dir.token_keys().unwrap().issuer());
    }

    #[test]
    fn opening_an_empty_directory_says_how_to_create_it() {
        let tmp = tempfile::tempdir().unwrap();
        for path in [tmp.path().to_owned(), tmp.path().join("absent")] {
            let err = DataDir::open(&path).unwrap_err();
            assert!(matches!(err, DataDirError::NotInitialised { .. }));
            let text = err.to_string();
            assert!(text.contains("is not an assist data directory"), "{text}");
            assert!(text.contains("assist-relay serve --data-dir"), "{text}");
        }
    }

    #[tokio::test]
    async fn missing_keys_are_never_regenerated_next_to_a_database() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        DataDir::init_or_open(&path, &[]).await.unwrap();
        fs::remove_file(path.join(CA_KEY)).unwrap();
        let err = DataDir::init_or_open(&path, &[]).await.unwrap_err();
        assert!(matches!(err, DataDirError::Incomplete { ref missing, .. } if missing == &[CA_KEY]), "{err}");
        assert!(!path.join(CA_KEY).exists());

        let keys_only = tmp.path().join("keys-only");
        copy_dir(&path, &keys_only, &[CA_CERT, TOKEN_KEY]);
        let err = DataDir::init_or_open(&keys_only, &[]).await.unwrap_err();
        assert!(matches!(err, DataDirError::NoDatabase { .. }), "{err}");
        assert!(matches!(DataDir::open(&keys_only), Err(DataDirError::NoDatabase { .. })));
    }

    #[tokio::test]
    async fn a_missing_server_certificate_is_reissued_by_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data");
        let (dir, _) = DataDir::init_or_open(&path, &[]).await.unwrap();
        fs::remove_file(path.join(SERVER_CERT)).unwrap();
        let (again, admin) = DataDir::init_or_open(&path, &["relay.example.test".into()]).await.unwrap();
        assert!(admin.is_none());
        assert_eq!(again.ca_fingerprint(), dir.ca_fingerprint());
        assert_ne!(again.server_chain_pem().unwrap(), dir.server_chain_pem().unwrap());
    }

    #[tokio::test]
    async fn an_interrupted_first_start_is_finished_or_begun_again() {
        let tmp = tempfile::tempdir().unwrap();
        let done = tmp.path().join("done");
        let (reference, _) = DataDir::init_or_open(&done, &[]).await.unwrap();

        // Interrupted while moving files in: the rest is moved and a new password issued.
        let moving = tmp.path().join("moving");
        copy_dir(
            &done,
            &moving.join(STAGING),
            &[CA_KEY, SERVER_CERT, SERVER_KEY, TOKEN_KEY, GRANT_KEY, DATABASE],
        );
        copy_dir(&done, &moving, &[CA_CERT]);
        assert!(matches!(DataDir::open(&moving), Err(DataDirError::Interrupted { .. })));
        let (dir, admin) = DataDir::init_or_open(&moving, &[]).await.unwrap();
        assert_eq!(dir.ca_fingerprint(), reference.ca_fingerprint());
        let admin = admin.expect("a new password for the admin nobody saw");
        let user = dir.store().await.unwrap().user(&admin.user).await.unwrap().unwrap();
        assert!(auth::verify_password(&admin.password, &user.password_hash));
        assert!(!moving.join(STAGING).exists());

        // Interrupted while generating: thrown away and begun again.
        let generating = tmp.path().join("generating");
        fs::create_dir_all(generating.join(STAGING)).unwrap();
        fs::write(generating.join(STAGING).join(CA_KEY), "half").unwrap();
        let (dir, admin) = DataDir::init_or_open(&generating, &[]).await.unwrap();
        assert!(admin.is_some());
        assert_ne!(dir.ca_fingerprint(), reference.ca_fingerprint());
        assert!(!generating.join(STAGING).exists());
    }

    #[tokio::test]
    async fn a_cluster_relay_takes_the_bundles_keys_and_refuses_a_directory_with_others() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = Bundle::generate().unwrap();
        let (one, admin) = DataDir::init_or_open_cluster(&tmp.path().join("r1"), &[], &bundle).await.unwrap();
        assert!(admin.is_some());
        let (two, _) = DataDir::init_or_open_cluster(&tmp.path().join("r2"), &[], &bundle).await.unwrap();
        assert_eq!(one.ca_fingerprint(), bundle.ca_fingerprint().unwrap());
        assert_eq!(two.ca_fingerprint(), one.ca_fingerprint());
        assert_eq!(one.token_keys().unwrap().issuer(), two.token_keys().unwrap().issuer());
        assert_eq!(read(&tmp.path().join("r2"), SECRETS_KEY).unwrap().trim(), bundle.secrets_key);
        assert_ne!(
            one.server_key_pem().unwrap(),
            two.server_key_pem().unwrap(),
            "each relay's own server key"
        );
        // Started again with its bundle: fine.
        DataDir::init_or_open_cluster(&tmp.path().join("r1"), &[], &bundle).await.unwrap();

        let other = Bundle::generate().unwrap();
        let before = read(&tmp.path().join("r1"), CA_KEY).unwrap();
        let err = DataDir::init_or_open_cluster(&tmp.path().join("r1"), &[], &other).await.unwrap_err();
        assert!(matches!(err, DataDirError::NotThisCluster { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(read(&tmp.path().join("r1"), CA_KEY).unwrap(), before, "nothing overwritten");

        let (_, _) = DataDir::init_or_open(&tmp.path().join("alone"), &[]).await.unwrap();
        let err = DataDir::init_or_open_cluster(&tmp.path().join("alone"), &[], &bundle).await.unwrap_err();
        assert!(matches!(err, DataDirError::NotThisCluster { .. }), "{err}");
    }
}
