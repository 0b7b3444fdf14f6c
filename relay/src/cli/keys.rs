//! Where an administration command finds the relay's keys and its database: a relay's data
//! directory, or (`--cluster-bundle FILE`) a cluster bundle and the cluster's PostgreSQL
//! `--database`, so that an administrator can run the commands on a machine that has no
//! relay data directory.

use anyhow::{Context, bail};
use assist_relay::cluster::bundle::Bundle;
use assist_relay::datadir::DataDir;
use assist_relay::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The keys and database of an administration command.
pub enum AdminKeys {
    Dir(Box<DataDir>),
    Bundle { bundle: Box<Bundle>, database: String },
}

/// Whether `database` is a PostgreSQL URL (what a cluster shares).
pub fn is_postgres(database: Option<&str>) -> bool {
    database.is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"))
}

/// The refusal of a bundle without a PostgreSQL database, for `serve` and the
/// administration commands alike.
pub fn need_postgres(database: Option<&str>) -> anyhow::Result<()> {
    if !is_postgres(database) {
        bail!("--cluster-bundle needs --database postgres://…: several relays need one PostgreSQL database");
    }
    Ok(())
}

impl AdminKeys {
    /// The bundle's keys when `bundle` is given (with a PostgreSQL `database`), else the
    /// data directory's.
    pub fn open(data_dir: &Path, database: Option<String>, bundle: Option<&PathBuf>) -> anyhow::Result<Self> {
        match bundle {
            Some(file) => {
                need_postgres(database.as_deref())?;
                let bundle = Bundle::read(file)?;
                Ok(AdminKeys::Bundle { bundle: Box::new(bundle), database: database.unwrap_or_default() })
            }
            None => Ok(AdminKeys::Dir(Box::new(DataDir::open(data_dir)?.with_database(database)))),
        }
    }

    /// Opens the database (its own connection pool).
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            AdminKeys::Dir(dir) => dir.store().await?,
            AdminKeys::Bundle { bundle, database } => {
                bundle.store(database).await.context("opening the cluster's database")?
            }
        })
    }

    /// The public key that verifies grants and recordings' seals.
    pub fn signing_public_key(&self) -> anyhow::Result<Vec<u8>> {
        let key = match self {
            AdminKeys::Dir(dir) => dir.grant_key()?,
            AdminKeys::Bundle { bundle, .. } => bundle.grant_key()?,
        };
        Ok(assist_proto::grant::public_key(&key))
    }

    /// The CA's certificate (PEM) and fingerprint.
    pub fn ca(&self) -> anyhow::Result<(String, String)> {
        Ok(match self {
            AdminKeys::Dir(dir) => (dir.ca_cert_pem().to_owned(), dir.ca_fingerprint().to_string()),
            AdminKeys::Bundle { bundle, .. } => {
                (bundle.ca_cert.clone(), bundle.ca_fingerprint()?.to_string())
            }
        })
    }
}
