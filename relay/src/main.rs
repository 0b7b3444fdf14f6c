//! `assist-relay`: the relay server and its administration commands.
//!
//! This file only parses arguments, prompts for passwords and prints results; the work is
//! done by [`assist_relay::serve`], [`assist_relay::datadir`] and [`assist_relay::admin`].
//! Results go to stdout (tables for people, `--json` for programs); logs, notes and
//! errors go to stderr, and any error exits with status 1.

use anyhow::{Context, bail};
use assist_proto::caps::Role;
use assist_proto::ids::validate_name;
use assist_relay::admin::{self, Revocation, format_time};
use assist_relay::datadir::DataDir;
use assist_relay::store::SqliteStore;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "assist-relay", version, about = "The assist relay: brokers consented remote sessions.")]
struct Cli {
    /// Data directory: CA, keys and database. Created by the first `serve`.
    #[arg(long, global = true, env = "ASSIST_DATA_DIR", default_value = "./assist-data", value_name = "DIR")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the relay (creating the data directory and a first admin on first start).
    Serve(ServeArgs),
    /// Organisations (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Users: engineers, approvers, auditors and admins.
    #[command(subcommand)]
    User(UserCommand),
    /// Join tokens for enrolling agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// UDP address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:4433", value_name = "ADDR")]
    listen: SocketAddr,
    /// Extra DNS name or IP address for the server certificate (repeatable). Used when
    /// the certificate is issued, on first start.
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// How long a session request waits for consent before it is denied.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, value_name = "DUR")]
    consent_timeout: Duration,
    /// The same for urgent tickets (P0 and P1).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, value_name = "DUR")]
    urgent_consent_timeout: Duration,
    /// Lifetime of the tokens engineers get when they log in.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration, value_name = "DUR")]
    token_ttl: Duration,
    /// TCP address for the HTTP API (`/api/v1/health`); off unless given.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Adds an organisation.
    Add {
        name: String,
        /// A vendor organisation whose engineers may ask for sessions on this one's agents
        /// (repeatable).
        #[arg(long = "supported-by", value_name = "ORG")]
        supported_by: Vec<String>,
    },
    /// Lists organisations.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user; asks for the password twice unless --password-stdin.
    Add {
        name: String,
        #[arg(long, value_name = "ORG")]
        org: String,
        /// engineer, approver, auditor or admin.
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// Reads the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a single-use join token and prints it alone on stdout.
    Create {
        #[arg(long, value_name = "ORG")]
        org: String,
        /// How long the token stays valid (1 minute to 30 days).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DUR")]
        ttl: Duration,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Lists enrolled agents.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revokes an agent: its certificate is refused from then on.
    Revoke { name: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ignored if something installed a provider already; there is only one in the graph.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir;
    if let Command::Serve(args) = cli.command {
        return serve(data_dir, args).await;
    }
    let store = DataDir::open(&data_dir)?.store().await?;
    let result = admin_command(&store, cli.command).await;
    store.close().await;
    result
}

async fn serve(data_dir: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let (dir, first_admin) = DataDir::init_or_open(&data_dir, &args.server_names).await?;
    if let Some(admin) = first_admin {
        let mut out = std::io::stdout().lock();
        writeln!(out, "created data directory {}", dir.path().display())?;
        writeln!(out, "admin user: {}", admin.user)?;
        writeln!(out, "admin password: {}", admin.password)?;
        writeln!(out, "(the password is shown only this once)")?;
        out.flush()?;
    }
    assist_relay::serve::run(assist_relay::serve::ServeConfig {
        data_dir: dir,
        listen: args.listen,
        consent_timeout: args.consent_timeout,
        urgent_consent_timeout: args.urgent_consent_timeout,
        token_ttl: args.token_ttl,
        http: args.http,
    })
    .await?;
    Ok(())
}

async fn admin_command(store: &SqliteStore, command: Command) -> anyhow::Result<()> {
    let now = assist_relay::now_ms();
    match command {
        Command::Serve(_) => unreachable!("handled by run"),
        Command::Org(OrgCommand::Add { name, supported_by }) => {
            admin::org_add(store, &name, &supported_by, now).await?;
            eprintln!("added organisation {name}");
        }
        Command::Org(OrgCommand::List { json }) => {
            let orgs = admin::org_list(store).await?;
            print_rows(json, &orgs, &["NAME", "SUPPORTED BY", "CREATED"], |o| {
                vec![o.name.to_string(), join_or_dash(&o.supported_by), format_time(o.created_at)]
            })?;
        }
        Command::User(UserCommand::Add { name, org, role, password_stdin }) => {
            // Checked before asking for a password that would then be thrown away.
            validate_name("user", &name).map_err(anyhow::Error::msg)?;
            validate_name("organisation", &org).map_err(anyhow::Error::msg)?;
            let password = if password_stdin { password_from_stdin()? } else { password_from_prompt(&name)? };
            admin::user_add(store, &name, &org, role, &password, now).await?;
            eprintln!("added {role} {name} to {org}");
        }
        Command::User(UserCommand::List { json }) => {
            let users = admin::user_list(store).await?;
            print_rows(json, &users, &["NAME", "ORG", "ROLE", "CREATED"], |u| {
                vec![u.name.to_string(), u.org.to_string(), u.role.to_string(), format_time(u.created_at)]
            })?;
        }
        Command::Token(TokenCommand::Create { org, ttl }) => {
            let token = admin::token_create(store, &org, ttl, now).await?;
            let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            println!("{token}");
            eprintln!("single-use join token for {org}, valid until {}", format_time(expires));
        }
        Command::Agent(AgentCommand::List { json }) => {
            let agents = admin::agent_list(store).await?;
            let headers = ["NAME", "ORG", "ONLINE", "CONSENT", "ENROLLED", "LAST SEEN", "REVOKED"];
            print_rows(json, &agents, &headers, |a| {
                vec![
                    a.name.to_string(),
                    a.org.to_string(),
                    if a.online { "yes" } else { "no" }.to_owned(),
                    a.consent.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    format_time(a.enrolled_at),
                    a.last_seen.map_or_else(|| "-".to_owned(), format_time),
                    a.revoked_at.map_or_else(|| "-".to_owned(), format_time),
                ]
            })?;
        }
        Command::Agent(AgentCommand::Revoke { name }) => {
            match admin::agent_revoke(store, &name, now).await? {
                Revocation::Revoked { .. } => eprintln!("revoked agent {name}"),
                Revocation::AlreadyRevoked { at } => {
                    eprintln!("agent {name} was already revoked at {}", format_time(at));
                }
            }
        }
    }
    Ok(())
}

fn join_or_dash(names: &[impl std::fmt::Display]) -> String {
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
    }
}

/// Prints `items` as a JSON array, or as a table with aligned columns.
fn print_rows<T: Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, items)?;
        writeln!(out)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(items.iter().map(row))
        .collect();
    let mut widths = vec![0; headers.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    // Only the line ending is removed: spaces may be part of a password.
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

fn password_from_prompt(user: &str) -> anyhow::Result<String> {
    let first =
        rpassword::prompt_password(format!("Password for {user}: ")).context("reading the password")?;
    let second = rpassword::prompt_password("Repeat it: ").context("reading the password")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}
