//! `assist-relay audit list | export | verify` as library functions, so that the binary
//! and the tests run the same code.
//!
//! - [`parse_time`] reads the `--since`/`--until` values people type: RFC 3339 in UTC, or
//!   a duration meaning that long ago (`2d`, `90m`).
//! - [`export_jsonl`] writes matching events one JSON object per line, reading the log in
//!   pages; [`export_jsonl_to_file`] does it atomically (a reader sees the old file or the
//!   whole new one, never a partial export).
//! - [`verify`] checks the whole chain, page by page, and reports the first broken event.
//! - [`check_against_export`] checks that every event of an earlier export (a SIEM's copy)
//!   is still in the log, unchanged: a chain alone cannot show that its newest events were
//!   cut off, a copy kept elsewhere can.
//!
//! They do not print or choose where output goes: that is the binary's job.

use crate::audit::{AuditFilter, BreakReason, ChainBreak, ChainVerifier, VerifiedChain};
use crate::store::{Store, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Events read from the store at a time by export and verification.
const PAGE: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AuditCmdError {
    #[error(
        "cannot read time {input:?}: use RFC 3339 in UTC (2026-01-31T12:00:00Z) or a duration ago (2d, 90m)"
    )]
    BadTime { input: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

type Result<T, E = AuditCmdError> = std::result::Result<T, E>;

/// Reads a point in time as Unix ms: RFC 3339 (UTC; the `T` and `Z` may be left out), or
/// a duration before `now` (`2d` is two days ago).
pub fn parse_time(input: &str, now: i64) -> Result<i64> {
    let bad = || AuditCmdError::BadTime { input: input.to_owned() };
    let text = input.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).map_err(|_| bad())?;
        return Ok(now.saturating_sub(ago));
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
    let ms = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    i64::try_from(ms).map_err(|_| bad())
}

/// Writes the events matching `filter` (its `after_seq` and `limit` are replaced by
/// paging) to `out`, one compact JSON object per line. Returns how many.
pub async fn export_jsonl(
    store: &dyn Store,
    filter: &AuditFilter,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut page = AuditFilter { after_seq: None, limit: Some(PAGE), ..filter.clone() };
    let mut count = 0;
    loop {
        let records = store.list_audit(&page).await?;
        let Some(last) = records.last() else { break };
        page.after_seq = Some(last.seq);
        for r in &records {
            serde_json::to_writer(&mut *out, r).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
            count += 1;
        }
    }
    out.flush()?;
    Ok(count)
}

/// Why an export stopped: the store, or the output.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// [`export_jsonl`] into `path`, atomically: the events go to a private temporary file
/// beside it, which replaces `path` only when complete and on disk.
pub async fn export_jsonl_to_file(store: &dyn Store, filter: &AuditFilter, path: &Path) -> Result<u64> {
    let write_err = |source| AuditCmdError::Write { path: path.to_owned(), source };
    let name = path.file_name().ok_or_else(|| write_err(io::Error::other("not a file name")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = async {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = BufWriter::new(options.open(&tmp).map_err(write_err)?);
        let count = match export_jsonl(store, filter, &mut file).await {
            Ok(n) => n,
            Err(ExportError::Store(e)) => return Err(e.into()),
            Err(ExportError::Io(e)) => return Err(write_err(e)),
        };
        let file = file.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        fs::rename(&tmp, path).map_err(write_err)?;
        #[cfg(unix)]
        File::open(&dir).and_then(|d| d.sync_all()).map_err(write_err)?;
        Ok(count)
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Checks the whole audit log. The outer error is a store that cannot be read at all;
/// the inner one the first event at which the chain breaks.
pub async fn verify(store: &dyn Store) -> Result<Result<VerifiedChain, ChainBreak>> {
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, PAGE).await?;
        if page.is_empty() {
            return Ok(Ok(verifier.finish()));
        }
        for row in page {
            let record = match row {
                Ok(r) => r,
                Err(u) => {
                    return Ok(Err(ChainBreak { seq: u.seq, reason: BreakReason::Unreadable(u.reason) }));
                }
            };
            if let Err(b) = verifier.push(&record) {
                return Ok(Err(b));
            }
            after = record.seq;
        }
    }
}

/// How an earlier export and the log disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportMismatch {
    /// Line `line` of the export is not an exported event.
    Unreadable { line: u64, reason: String },
    /// The exported event `seq` is no longer in the log (which ends at `head`).
    Missing { seq: i64, head: i64 },
    /// The exported event `seq` has another hash in the log now.
    Changed { seq: i64, exported: String, stored: String },
}

impl std::fmt::Display for ExportMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportMismatch::Unreadable { line, reason } => {
                write!(f, "export line {line} is not an audit event: {reason}")
            }
            ExportMismatch::Missing { seq, head } => write!(
                f,
                "event {seq} of the export is missing from the log, which ends at event {head}: events were removed"
            ),
            ExportMismatch::Changed { seq, exported, stored } => {
                write!(
                    f,
                    "event {seq} differs from the export (exported SHA256:{exported}, now SHA256:{stored})"
                )
            }
        }
    }
}

/// Checks every event of a JSONL export against the log. Returns how many were checked,
/// or the first disagreement.
pub async fn check_against_export(
    store: &dyn Store,
    export: impl io::BufRead,
) -> Result<Result<u64, ExportMismatch>> {
    let mut checked = 0;
    for (n, line) in export.lines().enumerate() {
        let line_no = n as u64 + 1;
        let unreadable = |reason: String| Ok(Err(ExportMismatch::Unreadable { line: line_no, reason }));
        let line = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(e) => return unreadable(e.to_string()),
        };
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return unreadable(e.to_string()),
        };
        let (Some(seq), Some(hash)) = (v["seq"].as_i64(), v["hash"].as_str()) else {
            return unreadable("no seq and hash".into());
        };
        let stored = store.audit_chain(seq - 1, 1).await?;
        match stored.first() {
            // The row's contents must still hash to what was exported, whatever its hash
            // column says.
            Some(Ok(r)) if r.seq == seq && r.hash == hash && r.computed_hash() == hash => {}
            Some(Ok(r)) if r.seq == seq => {
                return Ok(Err(ExportMismatch::Changed {
                    seq,
                    exported: hash.to_owned(),
                    stored: r.computed_hash(),
                }));
            }
            Some(Err(u)) if u.seq == seq => {
                return Ok(Err(ExportMismatch::Changed {
                    seq,
                    exported: hash.to_owned(),
                    stored: u.reason.clone(),
                }));
            }
            _ => {
                let head = head_seq(store).await?;
                return Ok(Err(ExportMismatch::Missing { seq, head }));
            }
        }
        checked += 1;
    }
    Ok(Ok(checked))
}

async fn head_seq(store: &dyn Store) -> Result<i64> {
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, PAGE).await?;
        match page.last() {
            None => return Ok(after),
            Some(Ok(r)) => after = r.seq,
            Some(Err(u)) => after = u.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent};
    use crate::store::SqliteStore;

    #[test]
    fn times_are_rfc3339_or_ago() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_time("90m", now).unwrap(), now - 90 * 60_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("2023-11-14 22:13:20", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z", now).unwrap(), 1_700_000_000_500);
        for bad in ["yesterday", "", "2023-13-01T00:00:00Z", "-2d"] {
            assert!(matches!(parse_time(bad, now), Err(AuditCmdError::BadTime { .. })), "{bad}");
        }
    }

    async fn store_with(n: i64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        for i in 0..n {
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            let e = AuditEvent::new(who, Action::LoginSucceeded).detail(serde_json::json!({ "i": i }));
            store.append_audit(&e, i).await.unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn export_writes_one_object_per_line_across_pages() {
        let (dir, store) = store_with(2_100).await;
        let alice = AuditFilter { actor: Some("alice".into()), ..AuditFilter::default() };
        let mut out = Vec::new();
        assert_eq!(export_jsonl(&store, &alice, &mut out).await.unwrap(), 1_050);
        let text = String::from_utf8(out).unwrap();
        let seqs: Vec<i64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=2_100).step_by(2).collect::<Vec<_>>());

        let path = dir.path().join("out.jsonl");
        fs::write(&path, "old").unwrap();
        assert_eq!(export_jsonl_to_file(&store, &alice, &path).await.unwrap(), 1_050);
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().contains(".tmp-")));
        assert_eq!(leftovers.count(), 0);
        assert_eq!(verify(&store).await.unwrap().map(|v| v.count), Ok(2_100));
    }

    #[tokio::test]
    async fn an_export_into_a_missing_directory_fails_cleanly() {
        let (dir, store) = store_with(3).await;
        let path = dir.path().join("no-such-dir").join("out.jsonl");
        assert!(matches!(
            export_jsonl_to_file(&store, &AuditFilter::default(), &path).await,
            Err(AuditCmdError::Write { .. })
        ));
    }

    #[tokio::test]
    async fn an_earlier_export_shows_events_cut_from_the_end() {
        let (dir, store) = store_with(5).await;
        let mut export = Vec::new();
        export_jsonl(&store, &AuditFilter::default(), &mut export).await.unwrap();
        assert_eq!(check_against_export(&store, &export[..]).await.unwrap(), Ok(5));

        // Someone with the file drops the triggers and the two newest events: the chain
        // that is left is intact, only the export shows the cut.
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
        for sql in [
            "DROP TRIGGER audit_events_no_delete",
            "DROP TRIGGER audit_events_no_update",
            "DELETE FROM audit_events WHERE seq > 3",
            "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        ] {
            sqlx::query(sql).execute(&raw).await.unwrap();
        }
        let first = export.split(|b| *b == b'\n').take(1).collect::<Vec<_>>().concat();
        assert_eq!(check_against_export(&store, &first[..]).await.unwrap(), Ok(1));
        let two = String::from_utf8(export.clone()).unwrap().lines().take(2).collect::<Vec<_>>().join("\n");
        assert!(matches!(
            check_against_export(&store, two.as_bytes()).await.unwrap(),
            Err(ExportMismatch::Changed { seq: 2, .. })
        ));
        let tail = String::from_utf8(export).unwrap().lines().skip(3).collect::<Vec<_>>().join("\n");
        assert_eq!(
            check_against_export(&store, tail.as_bytes()).await.unwrap(),
            Err(ExportMismatch::Missing { seq: 4, head: 3 })
        );
        assert!(matches!(
            check_against_export(&store, &b"{not json"[..]).await.unwrap(),
            Err(ExportMismatch::Unreadable { line: 1, .. })
        ));
    }
}
