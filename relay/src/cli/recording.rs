//! `assist-relay recording ...` (verify, export, play a session's recording) and
//! `assist-relay keys export` (the public keys an auditor needs to verify offline). The
//! work is done by `assist_relay::recording::cli`; this is the binary's side: arguments,
//! where the output goes.

use crate::cli::keys::AdminKeys;
use anyhow::{Context, bail};
use assist_proto::ids::SessionId;
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum RecordingCommand {
    /// Checks a recording: valid, truncated (never sealed) or tampered (and where).
    ///
    /// Exit status: 0 valid; 3 truncated (verifies as far as it goes, never sealed: the
    /// relay stopped mid-session); 4 tampered (a chunk, link, seal or signature does not
    /// verify); 1 the recording could not be checked (not found, unreadable, bad keys
    /// file); 2 bad arguments.
    Verify {
        /// The session whose recording to check (in DIR/recordings).
        #[arg(required_unless_present = "file")]
        session: Option<SessionId>,
        /// Check this file instead.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Public keys from `keys export`, to verify without the data directory.
        #[arg(long, value_name = "PATH")]
        keys: Option<PathBuf>,
        /// Where recordings are: a directory, file:///DIR or s3://BUCKET/PREFIX (default:
        /// DIR/recordings). See `serve --recordings`.
        #[arg(long, value_name = "URL")]
        recordings: Option<String>,
    },
    /// Writes a view of a recording, and audits it (`recording.exported`, with the
    /// SHA-256 of what was written).
    Export {
        session: SessionId,
        #[arg(long, value_enum)]
        format: RecordingFormat,
        /// For `raw` and `mp4`: the channel number (1 is the first channel of the session).
        #[arg(long, default_value_t = 1)]
        channel: u32,
        /// For `raw`: `out` (agent → engineer) or `in` (engineer → agent).
        #[arg(long, default_value = "out")]
        direction: String,
        /// For `mp4` of a desktop whose picture size changed: which part (from 1), each
        /// of one size.
        #[arg(long, value_name = "N")]
        part: Option<u32>,
        /// Write here instead of standard output.
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Where recordings are: a directory, file:///DIR or s3://BUCKET/PREFIX (default:
        /// DIR/recordings). See `serve --recordings`.
        #[arg(long, value_name = "URL")]
        recordings: Option<String>,
    },
    /// Replays a terminal recording in this terminal.
    Play {
        session: SessionId,
        /// Playback speed, e.g. 2 for twice as fast.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause kept, after scaling.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        max_idle: Duration,
        /// Where recordings are: a directory, file:///DIR or s3://BUCKET/PREFIX (default:
        /// DIR/recordings). See `serve --recordings`.
        #[arg(long, value_name = "URL")]
        recordings: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RecordingFormat {
    /// asciicast v2, for asciinema and other terminal players.
    Asciicast,
    /// The exact bytes of one channel direction.
    Raw,
    /// A desktop channel's video, its H.264 copied into an MP4 file.
    Mp4,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Prints (or writes) the public keys as JSON.
    Export {
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

/// `recording verify`'s status for a recording that was never sealed.
const VERIFY_TRUNCATED: u8 = 3;
/// `recording verify`'s status for a recording that does not verify.
const VERIFY_TAMPERED: u8 = 4;

/// Runs a recording command; `admin_keys` opens the keys and database when the command needs them
/// (`--keys` and the recordings' location need neither).
pub async fn recording_command(
    data_dir: &std::path::Path,
    admin_keys: impl Fn() -> anyhow::Result<AdminKeys>,
    cmd: RecordingCommand,
) -> anyhow::Result<ExitCode> {
    use assist_relay::recording::cli;
    match cmd {
        RecordingCommand::Verify { session, file, keys, recordings } => {
            let key = match keys {
                Some(path) => cli::PublicKeys::load(&path)?.key_bytes()?,
                None => admin_keys()?.signing_public_key()?,
            };
            let verdict = match (file, session) {
                (Some(path), _) => cli::verify_file(&path, &key).await?,
                (None, Some(id)) => {
                    let store = cli::open_store(recordings.as_deref(), data_dir)?;
                    cli::verify_session(store.as_ref(), &id, &key).await?
                }
                (None, None) => bail!("name a session or --file"),
            };
            println!("{verdict}");
            Ok(ExitCode::from(match verdict {
                assist_relay::recording::Verdict::Valid { .. } => 0,
                assist_relay::recording::Verdict::Truncated { .. } => VERIFY_TRUNCATED,
                assist_relay::recording::Verdict::Tampered { .. } => VERIFY_TAMPERED,
            }))
        }
        RecordingCommand::Export { session, format, channel, direction, part, output, recordings } => {
            let store = cli::open_store(recordings.as_deref(), data_dir)?;
            let kind = match format {
                RecordingFormat::Asciicast => cli::ExportKind::Asciicast,
                RecordingFormat::Raw => {
                    cli::ExportKind::Raw { channel, dir: cli::parse_direction(&direction)? }
                }
                RecordingFormat::Mp4 => cli::ExportKind::Mp4 { channel, part },
            };
            let cli::Exported { bytes, mut event } = cli::export(store.as_ref(), &session, kind).await?;
            // Audited before anything is written: an export nobody can see never leaves.
            event.actor = crate::actor();
            event.detail["output"] =
                output.as_ref().map_or("standard output".to_owned(), |p| p.display().to_string()).into();
            let db = admin_keys()?.store().await?;
            let audited = db.append_audit(&event, assist_relay::now_ms()).await;
            db.close().await;
            audited.context("auditing the export")?;
            match output {
                Some(path) => write_file_atomically(&path, &bytes)?,
                None => std::io::stdout().lock().write_all(&bytes)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        RecordingCommand::Play { session, speed, max_idle, recordings } => {
            let store = cli::open_store(recordings.as_deref(), data_dir)?;
            cli::play(store.as_ref(), &session, speed, max_idle).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn keys_command(keys: &AdminKeys, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Export { output } = cmd;
    let (ca_pem, ca_fingerprint) = keys.ca()?;
    let keys = assist_relay::recording::cli::PublicKeys {
        relay_signing_key: hex::encode(keys.signing_public_key()?),
        ca_fingerprint,
        ca_pem,
    };
    let json = serde_json::to_string_pretty(&keys)? + "\n";
    match output {
        Some(path) => write_file_atomically(&path, json.as_bytes())?,
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a whole file or nothing: a temporary file beside it, then a rename.
/// Exports are private (0600) like the store, and complete or absent.
fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    assist_relay::private_file::write_private(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}
