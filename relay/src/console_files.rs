//! The console's [`FilesState`] on the relay: the browser's listings, downloads and
//! uploads go through `wire::browser_files` (one file channel each, admitted, recorded and
//! audited as `assist cp`'s), and a session's transfers come from its `file.transferred`
//! audit events. A session the user may not see is "not found", as everywhere.

use crate::audit::AuditFilter;
use crate::console_state::{RelayConsole, from_refusal, internal, principal};
use crate::wire::browser_files::{self, FilesError, UploadTo};
use assist_console::files::{Download, FileEntryView, FilesState, UploadQuery, Uploaded};
use assist_console::{Account, ApiError, EventView, TransferView};
use assist_proto::caps::Role;
use assist_proto::files::{EntryKind, is_plain_name};
use assist_proto::ids::SessionId;
use bytes::Bytes;
use tokio::sync::mpsc;

fn engineer(user: &Account) -> Result<crate::broker::policy::Principal, ApiError> {
    let who = principal(user)?;
    if who.role != Role::Engineer {
        return Err(ApiError::Forbidden(format!(
            "only a session's engineer moves its files; you are {}",
            who.role
        )));
    }
    Ok(who)
}

fn refused(e: FilesError) -> ApiError {
    match e.session_refusal() {
        Ok(r) => from_refusal(r),
        Err(FilesError::Failed(m)) => ApiError::Conflict(m),
        Err(other) => ApiError::BadRequest(other.to_string()),
    }
}

fn kind(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Other => "other",
    }
}

#[async_trait::async_trait]
impl FilesState for RelayConsole {
    async fn list_files(&self, user: &Account, id: &str, path: &str) -> Result<Vec<FileEntryView>, ApiError> {
        let who = engineer(user)?;
        let entries = browser_files::list(&self.relay, &who, &SessionId::new(id), path.to_owned())
            .await
            .map_err(refused)?;
        Ok(entries
            .into_iter()
            .map(|e| FileEntryView {
                name: e.path,
                kind: kind(e.kind).into(),
                size: e.size,
                modified: e.modified,
            })
            .collect())
    }

    async fn download(&self, user: &Account, id: &str, path: &str) -> Result<Download, ApiError> {
        let who = engineer(user)?;
        let d = browser_files::download(self.relay.clone(), &who, &SessionId::new(id), path.to_owned())
            .await
            .map_err(refused)?;
        Ok(Download { size: d.size, body: d.body })
    }

    async fn upload(
        &self,
        user: &Account,
        id: &str,
        to: UploadQuery,
        body: mpsc::Receiver<Bytes>,
    ) -> Result<Uploaded, ApiError> {
        let who = engineer(user)?;
        if !is_plain_name(&to.name) {
            return Err(ApiError::BadRequest(format!(
                "file name {:?} must be one plain path component",
                to.name
            )));
        }
        let sha_ok = to.sha256.len() == 64 && to.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !sha_ok {
            return Err(ApiError::BadRequest("sha256 must be 64 hexadecimal digits".into()));
        }
        let path = format!("{}/{}", to.dir.trim_end_matches('/'), to.name);
        let up =
            UploadTo { dir: to.dir, name: to.name, size: to.size, sha256: to.sha256, replace: to.replace };
        let done =
            browser_files::upload(&self.relay, &who, &SessionId::new(id), up, body).await.map_err(refused)?;
        Ok(Uploaded { path, size: done.size, sha256: done.sha256 })
    }

    async fn transfers(&self, user: &Account, id: &str) -> Result<Vec<TransferView>, ApiError> {
        let who = principal(user)?;
        let info = self.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
        let filter = AuditFilter { session: Some(info.id), ..Default::default() };
        let records = self.db.list_audit(&filter).await.map_err(internal)?;
        Ok(records
            .into_iter()
            .filter(|r| r.action == "file.transferred")
            .map(|r| EventView {
                seq: r.seq,
                at: r.at,
                detail: serde_json::from_str(&r.detail).unwrap_or_default(),
                actor: r.actor,
                action: r.action,
            })
            .filter_map(|e| crate::console_review::transfer(&e))
            .collect())
    }
}
