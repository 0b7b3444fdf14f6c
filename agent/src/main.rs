//! `assist-agent`: runs on the customer machine. Parses arguments and calls the library
//! (`assist_client::agent`), giving it the X11 desktop ([`x11`]) when a display is there.

mod notice;
mod x11;

use anyhow::Result;
use assist_certs::Fingerprint;
use assist_client::agent::desktop::DesktopHost;
use assist_client::agent::exec::Scripts;
use assist_client::agent::run::RunConfig;
use assist_client::agent::state::AgentDir;
use assist_client::agent::{enroll, run};
use assist_proto::caps::ConsentMode;
use assist_proto::files::TransferLimits;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "assist-agent",
    version,
    about = "The assist agent: lets approved engineers in, and nobody else."
)]
struct Cli {
    /// Where the agent keeps its key, certificate and enrollment (default: the platform's
    /// data directory).
    #[arg(long, global = true, env = "ASSIST_AGENT_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll this machine with a relay, using a join token from its administrator.
    Enroll {
        /// The relay, HOST:PORT.
        #[arg(long)]
        relay: String,
        /// The single-use join token (`assist-relay token create`).
        #[arg(long, env = "ASSIST_JOIN_TOKEN")]
        token: String,
        /// The relay CA's fingerprint, SHA256:...
        #[arg(long)]
        ca_fingerprint: Fingerprint,
        /// This agent's name, unique on the relay (e.g. erp-db01).
        #[arg(long)]
        name: String,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Stay connected to the relay and serve approved sessions.
    Run {
        /// Where consent comes from: `prompt` (asked here, on this terminal), `approver` (an
        /// approver of this agent's organisation) or `window` (unattended: the organisation's
        /// pre-approved maintenance windows, else an approver). On a terminal, typing `k`
        /// and Enter ends every live session at once (the kill key), in every mode.
        #[arg(long, default_value = "approver")]
        consent: ConsentMode,
        /// A JSON file listing the diagnostic scripts engineers may run by name (`exec`
        /// capability): name, absolute path, fixed arguments, timeout. None by default.
        #[arg(long, value_name = "FILE")]
        scripts: Option<PathBuf>,
        /// Largest file transfer served (one file, or all files of a recursive copy or log
        /// collection), e.g. 500MiB.
        #[arg(long, default_value = "2GiB", value_parser = assist_proto::files::parse_size, value_name = "SIZE")]
        max_transfer: u64,
        /// Most files in one recursive copy or log collection.
        #[arg(long, default_value_t = 10_000, value_name = "N")]
        max_files: u64,
        /// Show each session's terminal here as it happens (what the engineer's shell shows,
        /// so what they type), as plain labelled lines: escape sequences are dropped, so
        /// nothing can draw over this terminal or its questions.
        #[arg(long)]
        show_sessions: bool,
        /// The X display whose desktop approved engineers may view or control (`:0`).
        /// Default: `$DISPLAY`. A service reaches a logged-in user's display with that
        /// session's `XAUTHORITY` in its environment (see the README). Without a display
        /// that opens, desktop requests are refused before anyone is asked.
        #[arg(long, value_name = "DISPLAY")]
        display: Option<String>,
        /// Another relay of the cluster to keep a connection to (HOST:PORT, repeatable),
        /// besides those the relays tell of. A single relay needs none.
        #[arg(long = "relay", value_name = "HOST:PORT")]
        relays: Vec<String>,
        /// The longest wait between two attempts to reach a relay (the waits double up to
        /// it, with jitter, separately for each relay).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DUR")]
        max_backoff: std::time::Duration,
    },
}

async fn main_inner(cli: Cli) -> Result<()> {
    let dir = AgentDir::locate(cli.data_dir)?;
    match cli.cmd {
        Cmd::Enroll { relay, token, ca_fingerprint, name, force } => {
            let e = enroll::enroll(&dir, &relay, &token, ca_fingerprint, &name, force).await?;
            eprintln!(
                "Enrolled as {} in organisation {} with {}; state in {}",
                e.name,
                e.org,
                e.relay,
                dir.path().display()
            );
        }
        Cmd::Run {
            consent,
            scripts,
            max_transfer,
            max_files,
            show_sessions,
            display,
            relays,
            max_backoff,
        } => {
            // The kill key needs a terminal; the prompt mode needs one to be answered at all.
            let prompt =
                consent == ConsentMode::Prompt || std::io::IsTerminal::is_terminal(&std::io::stdin());
            let scripts = match scripts {
                Some(path) => Scripts::load(&path).map_err(anyhow::Error::msg)?,
                None => Scripts::default(),
            };
            let cfg = RunConfig {
                consent,
                prompt,
                limits: TransferLimits { max_bytes: max_transfer, max_files },
                scripts: std::sync::Arc::new(scripts),
                show: show_sessions.then(assist_client::agent::show::Shown::new),
                desktop: desktop(display),
                relays,
                max_backoff,
                ..RunConfig::default()
            };
            run::run(&dir, cfg).await?;
        }
    }
    Ok(())
}

/// The desktop this agent serves, if its display opens; why not is said once.
fn desktop(display: Option<String>) -> Option<std::sync::Arc<dyn DesktopHost>> {
    let asked = display.is_some();
    match x11::X11Host::probe(display) {
        Ok(host) => {
            eprintln!("assist-agent: serving the desktop of display {}", host.display().unwrap_or_default());
            Some(std::sync::Arc::new(host))
        }
        Err(why) => {
            if asked {
                eprintln!("assist-agent: no desktop: {why}");
            }
            tracing::info!(%why, "no desktop served");
            None
        }
    }
}

fn main() {
    assist_net::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSIST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // One thread runs every task: bytes move between the QUIC streams and the terminal or
    // pipes without waking another worker, which is most of a keystroke's round trip on
    // a busy machine, and a good part of a bulk transfer's CPU. The terminal threads and
    // the consent prompt's stdin reader are threads of their own; nothing else blocks.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(main_inner(cli));
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    if let Err(e) = result {
        eprintln!("assist-agent: {e:#}");
        std::process::exit(1);
    }
}
