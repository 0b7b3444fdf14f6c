//! The evidence bundle an auditor downloads from a session's page: one tar archive with
//! everything needed to check the session away from the relay.
//!
//! `SESSION/recording.arec` (the recording as stored), `SESSION/keys.json` (the relay's
//! public keys, as `assist-relay keys export` writes them), `SESSION/audit.jsonl` (the
//! session's audit events, one JSON object per line, as `audit export` writes them) and
//! `SESSION/README.txt` (how to verify it offline). A session with no stored recording
//! gets a bundle without one, and the README says so.
//!
//! It packs what it is given; it neither reads the stores nor decides who may have it.

use crate::recording::cli::PublicKeys;

/// What goes into a bundle.
pub struct Evidence<'a> {
    pub session: &'a str,
    pub recording: Option<Vec<u8>>,
    pub keys: &'a PublicKeys,
    /// The session's audit events as `audit export --format jsonl` writes them.
    pub audit_jsonl: &'a [u8],
    /// Unix seconds, the files' modification time.
    pub made_at: u64,
}

fn readme(e: &Evidence<'_>) -> String {
    let id = e.session;
    let recording = if e.recording.is_some() {
        format!(
            "- recording.arec: the session's recording, as the relay stored it.\n\
             \n\
             To verify the recording offline (no relay, no network):\n\
             \n\
             \x20   assist-relay recording verify --file {id}/recording.arec --keys {id}/keys.json\n\
             \n\
             It says `valid` (complete, sealed and signed by the relay's key), `truncated` (never\n\
             sealed; verifies up to where it stops) or `tampered` (and where), and exits 0 only\n\
             when valid.\n"
        )
    } else {
        "- No recording was stored for this session, so none is included.\n".to_owned()
    };
    format!(
        "Evidence bundle for session {id}\n\
         \n\
         {recording}\
         - keys.json: the relay's public keys: the Ed25519 key that signs recording seals and\n\
         \x20 grants, and its certificate authority (PEM and SHA-256 fingerprint {fp}).\n\
         \x20 Compare the fingerprint with the one the relay's operator published.\n\
         - audit.jsonl: the session's audit events, one JSON object per line, each with the\n\
         \x20 hash of the event before it and its own (the relay's audit chain).\n",
        fp = e.keys.ca_fingerprint
    )
}

fn add(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mtime: u64) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// The bundle, as tar bytes.
pub fn tar(e: &Evidence<'_>) -> std::io::Result<Vec<u8>> {
    let id = e.session;
    let mut tar = tar::Builder::new(Vec::new());
    add(&mut tar, &format!("{id}/README.txt"), readme(e).as_bytes(), e.made_at)?;
    if let Some(rec) = &e.recording {
        add(&mut tar, &format!("{id}/recording.arec"), rec, e.made_at)?;
    }
    let keys = serde_json::to_string_pretty(e.keys).map_err(std::io::Error::other)? + "\n";
    add(&mut tar, &format!("{id}/keys.json"), keys.as_bytes(), e.made_at)?;
    add(&mut tar, &format!("{id}/audit.jsonl"), e.audit_jsonl, e.made_at)?;
    tar.into_inner()
}
