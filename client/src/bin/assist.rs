//! `assist`: the engineer's and approver's command line. Parses arguments and calls the
//! library; nothing else.

use anyhow::{Context, Result, bail};
use assist_certs::Fingerprint;
use assist_client::engineer::config::ConfigDir;
use assist_client::engineer::shell::{ShellRequest, Tty};
use assist_client::engineer::{self, EngineerError, Trust, render};
use assist_proto::caps::Priority;
use assist_proto::ids::{AgentName, SessionId};
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "assist",
    version,
    about = "Consent-first remote assistance: reach a customer's machine with their approval, on the record."
)]
struct Cli {
    /// Where the login and known relays are kept (default: the platform's config directory).
    #[arg(long, global = true, env = "ASSIST_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in to a relay; the token is cached for later commands.
    Login {
        /// The relay, HOST:PORT.
        #[arg(long, env = "ASSIST_RELAY")]
        relay: String,
        #[arg(long, env = "ASSIST_USER")]
        user: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The relay CA's fingerprint (SHA256:...), from its administrator. Without it, the
        /// fingerprint is shown on first contact for you to confirm.
        #[arg(long)]
        ca_fingerprint: Option<Fingerprint>,
    },
    /// Agents you may reach, with their online state.
    Agents {
        #[arg(long)]
        json: bool,
    },
    /// Open a shell on an agent, or run a command there (`-- CMD ARGS`).
    Shell {
        agent: AgentName,
        /// The ticket this work is for, e.g. INC-1042.
        #[arg(long)]
        ticket: String,
        /// Ticket priority, P0 (most urgent) to P3.
        #[arg(long, default_value = "P2")]
        priority: Priority,
        /// Why you need access; shown to whoever approves.
        #[arg(long)]
        reason: String,
        /// Force a remote PTY even for a command.
        #[arg(short = 't', conflicts_with = "no_tty")]
        tty: bool,
        /// Never ask for a remote PTY.
        #[arg(short = 'T')]
        no_tty: bool,
        /// The command to run instead of an interactive shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Pending requests you may answer (approvers), most urgent first.
    Requests {
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request.
    Approve { session: SessionId },
    /// Deny a pending request.
    Deny {
        session: SessionId,
        #[arg(long)]
        reason: String,
    },
    /// End a live session.
    End {
        session: SessionId,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Sessions you may see, newest first.
    Sessions {
        #[arg(long)]
        json: bool,
    },
}

fn read_password(from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for a password; use --password-stdin");
    }
    Ok(rpassword::prompt_password("Password: ")?)
}

fn ask_trust(relay: &str, fp: &Fingerprint) -> bool {
    eprintln!(
        "The relay at {relay} presents a CA with fingerprint\n  {fp}\nCompare it with the one your relay administrator gave you."
    );
    eprint!("Trust this relay? [yes/no] ");
    let _ = std::io::stderr().flush();
    if !std::io::stdin().is_terminal() {
        eprintln!("\nno terminal to confirm on; pass --ca-fingerprint");
        return false;
    }
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer.trim().eq_ignore_ascii_case("yes")
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn main_inner(cli: Cli) -> Result<i32> {
    let cfg = ConfigDir::locate(cli.config_dir)?;
    match cli.cmd {
        Cmd::Login { relay, user, password_stdin, ca_fingerprint } => {
            let password = read_password(password_stdin)?;
            let mut ask = ask_trust;
            let trust = match ca_fingerprint {
                Some(fp) => Trust::Fingerprint(fp),
                None => Trust::Ask(&mut ask),
            };
            let login = engineer::login(&cfg, &relay, &user, &password, trust).await?;
            eprintln!(
                "Logged in to {} as {} ({}, {}); valid until {}",
                login.relay,
                login.user,
                login.org,
                login.role,
                render::time(Some(login.expires_at))
            );
        }
        Cmd::Agents { json } => {
            let agents = engineer::agents(&cfg).await?;
            if json { print_json(&agents)? } else { print!("{}", render::agents(&agents)) }
        }
        Cmd::Requests { json } => {
            let reqs = engineer::requests(&cfg).await?;
            if json { print_json(&reqs)? } else { print!("{}", render::requests(&reqs, engineer::now_ms())) }
        }
        Cmd::Sessions { json } => {
            let s = engineer::sessions(&cfg).await?;
            if json { print_json(&s)? } else { print!("{}", render::sessions(&s)) }
        }
        Cmd::Approve { session } => eprintln!("{}", engineer::approve(&cfg, session).await?),
        Cmd::Deny { session, reason } => eprintln!("{}", engineer::deny(&cfg, session, reason).await?),
        Cmd::End { session, reason } => eprintln!("{}", engineer::end(&cfg, session, reason).await?),
        Cmd::Shell { agent, ticket, priority, reason, tty, no_tty, command } => {
            let req = ShellRequest {
                agent,
                ticket,
                priority,
                reason,
                command: (!command.is_empty()).then_some(command),
                tty: if tty {
                    Tty::Force
                } else if no_tty {
                    Tty::Never
                } else {
                    Tty::Auto
                },
            };
            return Ok(engineer::shell::run(&cfg, req).await?);
        }
    }
    Ok(0)
}

fn main() {
    assist_net::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSIST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // One thread runs every task: a keystroke or an output chunk moves between tasks
    // without waking another worker, which is most of a round trip on a busy machine.
    // Blocking work (terminal output, stdin) has threads of its own.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(main_inner(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("assist: {e:#}");
            match e.downcast_ref::<EngineerError>() {
                Some(EngineerError::Refused(_)) => 2,
                _ => 1,
            }
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
