//! `assist-agent`: runs on the customer machine. Parses arguments and calls the library.

use anyhow::Result;
use assist_certs::Fingerprint;
use assist_client::agent::run::RunConfig;
use assist_client::agent::state::AgentDir;
use assist_client::agent::{enroll, run};
use assist_proto::caps::ConsentMode;
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
        /// Where consent comes from: `prompt` (asked here, on this terminal) or `approver`
        /// (an approver of this agent's organisation).
        #[arg(long, default_value = "approver")]
        consent: ConsentMode,
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
        Cmd::Run { consent } => {
            run::run(&dir, RunConfig { consent, ..RunConfig::default() }).await?;
        }
    }
    Ok(())
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
