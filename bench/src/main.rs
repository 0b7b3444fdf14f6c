//! `assist-bench`: assist side by side with direct QUIC and OpenSSH on loopback, in one
//! run, interleaved round by round (A B A B …), printed as a table and written as JSON.
//!
//! `all` runs every figure; `bulk`, `cp`, `echo`, `setup`, `tunnel`, `idle`, `console`,
//! `watch` and `cluster` run one. `--quick` is a smoke run of seconds (small sizes, few rounds, N = 100), used by
//! the crate's test.
//! The hidden subcommands are the helper processes the figures start (direct-quinn
//! server and client, bare quinn server, idle-agent enrollment and load).
//!
//! It does not build anything: `bench/run` builds the release binaries first. Targets
//! are printed as PASS/MISS and never make the run fail.

mod browser;
mod bulk;
mod cluster;
mod cluster_idle;
mod cluster_kill;
mod cluster_world;
mod console;
mod cp;
mod echo;
mod fleet;
mod idle;
mod load;
mod pg;
mod procs;
mod quic;
mod report;
mod run;
mod setup;
mod ssh;
mod tunnel;
mod watch;
mod world;

use anyhow::Result;
use assist_certs::Fingerprint;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use run::{Ctx, Settings};

#[derive(Parser)]
#[command(name = "assist-bench", about = "Benchmarks assist against direct QUIC and OpenSSH on loopback.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options of a benchmark run; unset sizes take the full run's or `--quick`'s defaults.
#[derive(Args, Clone, Debug, Default)]
pub struct Opts {
    /// Smoke run of a few seconds: 16 MiB, 2 rounds, 50 keystrokes, N = 100, no install.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON (default: $CARGO_TARGET_DIR/bench/TIME.json, else
    /// target/bench/TIME.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Rounds of bulk, cp and echo (default 5; quick 2).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Rounds of session setup (default 10; quick 2).
    #[arg(long)]
    pub setup_rounds: Option<usize>,
    /// Size of the bulk and file-copy file in MiB (default 1024; quick 16).
    #[arg(long)]
    pub bulk_mib: Option<u64>,
    /// Keystrokes per echo session (default 1000; quick 50).
    #[arg(long)]
    pub keystrokes: Option<usize>,
    /// Numbers of idle agents, comma-separated (default 1000,10000; quick 100).
    #[arg(long, value_delimiter = ',')]
    pub idle: Option<Vec<usize>>,
    /// Rounds of the idle measurement (default 3; quick 1).
    #[arg(long)]
    pub idle_rounds: Option<usize>,
    /// Seconds to let idle connections settle before reading memory (default 12; quick 1).
    #[arg(long)]
    pub idle_settle: Option<f64>,
    /// Agents of the cluster figures: idle agents per relay, and the real `assist-agent`
    /// processes whose relay is killed (default 1000; quick 20).
    #[arg(long)]
    pub cluster_agents: Option<usize>,
    /// Seconds a killed relay stays down before it is started again (default 12, past the
    /// 10 s after which the cluster declares it lost; quick 1).
    #[arg(long)]
    pub cluster_down: Option<f64>,
    /// Skip the OpenSSH baselines.
    #[arg(long)]
    pub no_ssh: bool,
    /// Never install openssh-server (skip the ssh baselines if sshd is missing).
    #[arg(long)]
    pub no_install: bool,
    /// Directory of assist-relay, assist-agent and assist (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the run's temporary directory (logs, keys, configs) and print its path.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every figure: bulk, cp, echo, setup, tunnel, idle, console, watch, cluster.
    All(Opts),
    /// Bulk throughput and relay CPU per GiB.
    Bulk(Opts),
    /// File copy throughput, both ways, against scp.
    Cp(Opts),
    /// Keystroke echo round trip.
    Echo(Opts),
    /// Session setup time.
    Setup(Opts),
    /// OpenSSH through assist ssh-proxy and assist forward: bulk, a forwarded
    /// connection's setup, 100 concurrent forwarded connections.
    Tunnel(Opts),
    /// Relay memory per idle agent.
    Idle(Opts),
    /// The web console: a request's way to an approver's open page, and API latency with
    /// 50 signed-in users.
    Console(Opts),
    /// What watchers add to the relay's CPU per session.
    Watch(Opts),
    /// Several relays on PostgreSQL against one relay on SQLite: session setup and bulk,
    /// idle agents per relay, and 1,000 agents coming back to a killed relay.
    Cluster(Opts),
    #[command(hide = true)]
    QuicServer {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
    #[command(hide = true)]
    QuicClient {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        ca_fingerprint: Fingerprint,
        /// Time this many one-byte echoes instead of fetching; prints microseconds.
        #[arg(long)]
        echo: Option<usize>,
        #[arg(long, default_value_t = 2)]
        gap_ms: u64,
    },
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        data_dir: PathBuf,
    },
    #[command(hide = true)]
    IdleEnroll {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        relay: SocketAddr,
        #[arg(long)]
        ca_fingerprint: Fingerprint,
        /// The relay's database, if not its data directory's.
        #[arg(long)]
        database: Option<String>,
        #[arg(long)]
        org: String,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 16)]
        parallel: usize,
    },
    #[command(hide = true)]
    IdleLoad {
        #[arg(long)]
        relay: SocketAddr,
        #[arg(long)]
        ca_fingerprint: Fingerprint,
        #[arg(long)]
        identities: PathBuf,
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        parallel: usize,
        /// Say `Hello` as an agent of a cluster.
        #[arg(long)]
        cluster: bool,
    },
}

fn tokio() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn main() -> Result<()> {
    assist_net::install_crypto_provider();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::All(o) => run::bench(run::Which::all(), o),
        Cmd::Bulk(o) => run::bench(run::Which::only("bulk"), o),
        Cmd::Cp(o) => run::bench(run::Which::only("cp"), o),
        Cmd::Echo(o) => run::bench(run::Which::only("echo"), o),
        Cmd::Setup(o) => run::bench(run::Which::only("setup"), o),
        Cmd::Tunnel(o) => run::bench(run::Which::only("tunnel"), o),
        Cmd::Idle(o) => run::bench(run::Which::only("idle"), o),
        Cmd::Console(o) => run::bench(run::Which::only("console"), o),
        Cmd::Watch(o) => run::bench(run::Which::only("watch"), o),
        Cmd::Cluster(o) => run::bench(run::Which::only("cluster"), o),
        Cmd::QuicServer { data_dir, file } => tokio()?.block_on(quic::serve_file(&data_dir, file)),
        Cmd::QuicClient { addr, ca_fingerprint, echo: None, .. } => {
            let n = tokio()?.block_on(quic::fetch(addr, ca_fingerprint))?;
            println!("{n}");
            Ok(())
        }
        Cmd::QuicClient { addr, ca_fingerprint, echo: Some(n), gap_ms } => {
            // Single-threaded, as the `assist` client is.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let samples = rt.block_on(quic::echo(addr, ca_fingerprint, n, Duration::from_millis(gap_ms)))?;
            println!("{}", samples.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(" "));
            Ok(())
        }
        Cmd::BareServer { data_dir } => tokio()?.block_on(quic::bare(&data_dir)),
        Cmd::IdleEnroll { data_dir, database, relay, ca_fingerprint, org, n, out, parallel } => tokio()?
            .block_on(load::enroll(&data_dir, database, relay, ca_fingerprint, &org, n, &out, parallel)),
        Cmd::IdleLoad { relay, ca_fingerprint, identities, n, parallel, cluster } => {
            tokio()?.block_on(load::hold(relay, ca_fingerprint, &identities, n, parallel, cluster))
        }
    }
}
