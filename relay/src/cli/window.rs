//! `assist-relay window ...`: arguments and output of the maintenance-window commands. The
//! work is done by [`assist_relay::admin_windows`].

use super::table::{join_or_dash, print_rows};
use assist_proto::caps::Capability;
use assist_relay::admin_windows::{self, NewWindow};
use assist_relay::fmt_time;
use assist_relay::store::Store;
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum WindowCommand {
    /// Adds a pre-approved maintenance window for agents in `window` consent mode.
    Add {
        #[arg(long, value_name = "ORG")]
        org: String,
        /// One agent; all agents of the organisation if absent.
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// When each window opens: cron, 5 fields, UTC, e.g. "0 22 * * SAT".
        #[arg(long, value_name = "CRON")]
        schedule: String,
        /// How long each window stays open (1 minute to 3 days).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
        duration: Duration,
        /// A capability the window grants, e.g. shell or files.read:/var/log (repeatable).
        #[arg(long = "capability", value_name = "CAP", required = true)]
        capabilities: Vec<Capability>,
        /// An engineer who may use the window (repeatable).
        #[arg(long = "engineer", value_name = "USER", required = true)]
        engineers: Vec<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Lists windows, with whether each is open now.
    List {
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Removes a window.
    Remove { id: String },
}

pub async fn run(store: &dyn Store, cmd: WindowCommand, actor: &str, now: i64) -> anyhow::Result<()> {
    match cmd {
        WindowCommand::Add { org, agent, schedule, duration, capabilities, engineers, note } => {
            let w = NewWindow { org, agent, schedule, duration, capabilities, engineers, note };
            let v = admin_windows::window_add(store, w, actor, now).await?;
            println!("{}", v.id);
            eprintln!(
                "added window {} for {}: {} for {}{}",
                v.id,
                v.agent.as_ref().map_or_else(|| format!("all agents of {}", v.org), |a| a.to_string()),
                v.schedule,
                assist_relay::fmt_secs(v.duration_secs),
                v.open_now_secs
                    .map(|s| format!(" (open now, {} left)", assist_relay::fmt_secs(s)))
                    .unwrap_or_default()
            );
        }
        WindowCommand::List { org, json } => {
            let rows = admin_windows::window_list(store, org.as_deref(), now).await?;
            let headers = [
                "ID",
                "ORG",
                "AGENT",
                "SCHEDULE (UTC)",
                "FOR",
                "CAPABILITIES",
                "ENGINEERS",
                "OPEN NOW",
                "CREATED",
            ];
            print_rows(json, &rows, &headers, |w| {
                vec![
                    w.id.clone(),
                    w.org.to_string(),
                    w.agent.as_ref().map_or_else(|| "*".to_owned(), |a| a.to_string()),
                    w.schedule.clone(),
                    assist_relay::fmt_secs(w.duration_secs),
                    join_or_dash(&w.capabilities),
                    join_or_dash(&w.engineers),
                    w.open_now_secs
                        .map_or_else(|| "no".to_owned(), |s| format!("{} left", assist_relay::fmt_secs(s))),
                    fmt_time(w.created_at),
                ]
            })?;
        }
        WindowCommand::Remove { id } => {
            admin_windows::window_remove(store, &id, actor, now).await?;
            eprintln!("removed window {id}");
        }
    }
    Ok(())
}
