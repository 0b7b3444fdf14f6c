//! Files in the engineer's browser, within the session's grant: through the same file
//! channel, checks and audit events as `assist cp` and `assist ls` (the relay plays the
//! engineer's end of the channel; see [`FilesState`]).
//!
//! - `GET /api/v1/sessions/{id}/files?path=P`: the entries of folder `P`.
//! - `GET /api/v1/sessions/{id}/files/download?path=P`: the file, streamed as the agent
//!   sends it (`Content-Length` is its size). The body ends cleanly only once the agent
//!   confirmed the relay's SHA-256 of it; otherwise it breaks off, so a browser never
//!   keeps a broken download as complete.
//! - `POST /api/v1/sessions/{id}/files/upload?dir=D&name=N&size=S&sha256=H[&replace=true]`:
//!   the body (`application/octet-stream`, exactly S bytes) becomes `D/N` only if the
//!   page's SHA-256 `H`, the relay's and the agent's agree; the answer names the digest.
//!   The same-Origin rule of every change applies (`guard`), with this one route taking a
//!   raw body instead of JSON.
//! - `GET /api/v1/sessions/{id}/files/transfers`: the session's transfers as the agent
//!   reported them (`file.transferred`: both digests), for the page to show a download's
//!   digests once the agent's report is in.
//!
//! Nothing here decides: a session that is not the user's, a path outside the grant, a
//! file over the relay's limits are the relay's refusals, passed on.

use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::{Account, ConsoleState, TransferView};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;

type St = State<Arc<dyn ConsoleState>>;

/// Body chunks queued towards the relay during an upload.
const UPLOAD_QUEUE: usize = 16;

/// One entry of a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntryView {
    /// The entry's name (empty for the listed path itself, when it is a file).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    pub size: u64,
    /// Unix milliseconds.
    pub modified: i64,
}

/// A download as the relay starts it.
pub struct Download {
    pub size: u64,
    /// The file's bytes; an `Err` item means the transfer did not complete.
    pub body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

/// Where an upload goes and what the page says it is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub dir: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub replace: bool,
}

/// A file put in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uploaded {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What the file routes need from the relay. Every call is refused for anyone but the
/// session's engineer, and for anything its grant does not cover, as the relay decides.
#[async_trait::async_trait]
pub trait FilesState: Send + Sync + 'static {
    async fn list_files(&self, user: &Account, id: &str, path: &str) -> Result<Vec<FileEntryView>, ApiError>;
    async fn download(&self, user: &Account, id: &str, path: &str) -> Result<Download, ApiError>;
    async fn upload(
        &self,
        user: &Account,
        id: &str,
        to: UploadQuery,
        body: mpsc::Receiver<Bytes>,
    ) -> Result<Uploaded, ApiError>;
    /// The session's reported transfers, oldest first.
    async fn transfers(&self, user: &Account, id: &str) -> Result<Vec<TransferView>, ApiError>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    pub path: String,
}

pub async fn list(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let entries = state.list_files(&c.account, &id, &q.path).await?;
    Ok(Json(serde_json::json!({ "path": q.path, "entries": entries })).into_response())
}

pub async fn transfers(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.transfers(&c.account, &id).await?).into_response())
}

pub async fn download(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let d = state.download(&c.account, &id, &q.path).await?;
    let name = safe_name(q.path.rsplit('/').next().unwrap_or_default());
    let body =
        futures_util::stream::unfold(d.body, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CONTENT_LENGTH, d.size.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

pub async fn upload(
    State(state): St,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, req.headers()).await?;
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    let mut stream = req.into_body().into_data_stream();
    // The body goes to the relay as it arrives; the relay reads exactly the declared size.
    let pump = async move {
        while let Some(Ok(chunk)) = stream.next().await {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    };
    let upload = state.upload(&c.account, &id, q, rx);
    let (done, ()) = tokio::join!(upload, pump);
    Ok(Json(done?).into_response())
}

/// A file name for `Content-Disposition`: quotes, backslashes and controls dropped.
fn safe_name(name: &str) -> String {
    let s: String = name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').take(200).collect();
    if s.is_empty() { "download".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_named_safely() {
        assert_eq!(safe_name("app.log"), "app.log");
        assert_eq!(safe_name("a\"b\\c\r\n.txt"), "abc.txt");
        assert_eq!(safe_name(""), "download");
    }
}
