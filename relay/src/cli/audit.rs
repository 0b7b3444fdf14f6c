//! `assist-relay audit ...`: list, export and verify the audit log (the work is
//! `assist_relay::audit_cmd`'s; this parses the filters and prints).

use anyhow::Context;
use assist_proto::ids::{OrgName, SessionId};
use assist_relay::audit::AuditFilter;
use assist_relay::audit_cmd;
use assist_relay::fmt_time as format_time;
use assist_relay::store::Store;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

use super::table::print_rows;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Lists audit events, oldest first.
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Exports audit events, one JSON object per line.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Writes to FILE (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Checks the whole hash chain; exits 1 at the first broken event.
    Verify {
        /// Also check that every event of this earlier `audit export` (a SIEM's copy) is
        /// still in the log unchanged: this shows events cut from the end, which the chain
        /// alone cannot.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Args)]
pub struct AuditFilterArgs {
    /// Events at or after T: RFC 3339 in UTC, or a duration ago (2d, 90m).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Events before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Events concerning this organisation.
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// Events of this session.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Events by this actor (a user, agent:NAME, relay, admin-cli:USER).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

impl AuditFilterArgs {
    fn filter(self, now: i64) -> anyhow::Result<AuditFilter> {
        let time = |t: Option<String>| t.map(|t| audit_cmd::parse_time(&t, now)).transpose();
        Ok(AuditFilter {
            since: time(self.since)?,
            until: time(self.until)?,
            org: self.org.map(OrgName::new),
            session: self.session.map(SessionId::new),
            actor: self.actor,
            after_seq: None,
            limit: None,
        })
    }
}

pub async fn run(store: &dyn Store, command: AuditCommand, now: i64) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::List { filter, json } => {
            let events = store.list_audit(&filter.filter(now)?).await?;
            let headers = ["SEQ", "TIME", "ACTOR", "ORG", "ACTION", "TARGET", "SESSION", "DETAIL"];
            print_rows(json, &events, &headers, |e| {
                let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
                vec![
                    e.seq.to_string(),
                    format_time(e.at),
                    e.actor.clone(),
                    dash(&e.org),
                    e.action.clone(),
                    dash(&e.target),
                    dash(&e.session),
                    e.detail.clone(),
                ]
            })?;
        }
        AuditCommand::Export { format: ExportFormat::Jsonl, filter, output } => {
            let filter = filter.filter(now)?;
            let count = match output {
                Some(path) => {
                    let n = audit_cmd::export_jsonl_to_file(store, &filter, &path).await?;
                    eprintln!("exported {n} events to {}", path.display());
                    n
                }
                None => audit_cmd::export_jsonl(store, &filter, &mut std::io::stdout().lock()).await?,
            };
            tracing::debug!(count, "audit export done");
        }
        AuditCommand::Verify { against } => {
            match audit_cmd::verify(store).await? {
                Ok(chain) => {
                    println!("audit log intact: {} events, head SHA256:{}", chain.count, chain.head_hash);
                }
                Err(broken) => {
                    println!("{broken}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            if let Some(path) = against {
                let file =
                    std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
                match audit_cmd::check_against_export(store, std::io::BufReader::new(file)).await? {
                    Ok(n) => println!("all {n} events of {} are in the log, unchanged", path.display()),
                    Err(mismatch) => {
                        println!("{mismatch}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
