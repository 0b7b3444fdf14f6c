//! `assist`: the engineer's and approver's command line. Parses arguments and calls the
//! library; nothing else.

use anyhow::{Context, Result, bail};
use assist_certs::Fingerprint;
use assist_client::clock;
use assist_client::engineer::config::ConfigDir;
use assist_client::engineer::cp::{CopyRequest, Side};
use assist_client::engineer::session::SessionChoice;
use assist_client::engineer::shell::{ShellRequest, Tty};
use assist_client::engineer::transfer::Options;
use assist_client::engineer::{self, EngineerError, Trust, render};
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::text;
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

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
        /// Read the password from the first line of standard input (and, if the relay asks
        /// for one, the code from your authenticator app from the second).
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
        /// How long you need access, e.g. 30m or 2h (default: the relay's, usually 1h).
        #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DUR")]
        duration: Option<Duration>,
        /// Another capability to ask for besides the shell, for use from other commands
        /// in the same session, e.g. files.read:/var/log/erp (repeatable).
        #[arg(long = "also", value_name = "CAP")]
        also: Vec<Capability>,
        /// The command to run instead of an interactive shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// See (and with --control, use) an agent's desktop in your browser: opens the
    /// console's viewer with this request filled in; the page asks for it, shows whom it
    /// waits for, then the screen. Sign in to the console in that browser first.
    Desktop {
        agent: AgentName,
        /// The ticket this work is for, e.g. INC-1042.
        #[arg(long)]
        ticket: String,
        /// Ticket priority, P0 (most urgent) to P3.
        #[arg(long, default_value = "P2")]
        priority: Priority,
        /// Why you need to see the desktop; shown to whoever approves.
        #[arg(long)]
        reason: String,
        /// Ask for the mouse and keyboard too (desktop.control), not only the picture.
        #[arg(long)]
        control: bool,
        /// Ask for the customer's clipboard too (clipboard): text you send is put on it,
        /// and what they copy is shown to you.
        #[arg(long)]
        clipboard: bool,
        /// How long you need access, e.g. 30m or 2h.
        #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DUR", default_value = "1h")]
        duration: Duration,
        /// The console's address (default: https://RELAY-HOST:8443).
        #[arg(long, value_name = "URL")]
        console: Option<String>,
        /// Print the address only; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Copy files to or from an agent, scp-style: one side is AGENT:/absolute/path.
    Cp {
        /// Copy directories recursively.
        #[arg(short = 'r')]
        recursive: bool,
        /// Continue an interrupted copy from its partial file.
        #[arg(long)]
        resume: bool,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// At most this many bytes per second, e.g. 10M.
        #[arg(long, value_parser = assist_proto::files::parse_size, value_name = "RATE")]
        limit_rate: Option<u64>,
        src: String,
        dst: String,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// List a directory on an agent: AGENT:/absolute/path.
    Ls {
        target: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Run one of the agent's allowlisted diagnostic scripts by name; its exit code is ours.
    /// In a session of its own it ends with the script; with --session S (whose grant
    /// covers exec:NAME) it runs in that session, which goes on.
    Exec {
        agent: AgentName,
        name: String,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Collect files (logs) under PATH... on an agent into a .tar.gz with a manifest.
    Logs {
        agent: AgentName,
        /// Only files modified within this long, e.g. 2d or 12h.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
        since: Option<Duration>,
        /// Where to write the archive (default AGENT-logs-UNIXTIME.tar.gz).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        paths: Vec<String>,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Forward local TCP ports to HOST:HOSTPORT as reached from the agent's machine, like
    /// ssh -L; every connection is its own recorded channel. Ctrl-C ends it.
    Forward {
        agent: AgentName,
        /// [BIND:]PORT:HOST:HOSTPORT (repeatable); BIND defaults to 127.0.0.1, PORT 0
        /// picks a free port. Asks for the capability forward:HOST:HOSTPORT.
        #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:HOSTPORT", required = true)]
        forwards: Vec<engineer::forward::Spec>,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// An OpenSSH ProxyCommand: serves SSH on stdin/stdout for HOST (AGENT.assist), so
    /// that ssh, scp, sftp and rsync -e ssh reach the agent through a session, recorded
    /// like assist shell. See assist ssh-config.
    SshProxy {
        /// The SSH host name, %h: AGENT.assist or AGENT.
        host: String,
        /// Work in this live session of yours instead of requesting one.
        #[arg(long, env = "ASSIST_SESSION", value_name = "S")]
        session: Option<SessionId>,
        /// The ticket this work is for (for a new session).
        #[arg(long, env = "ASSIST_TICKET")]
        ticket: Option<String>,
        #[arg(long, env = "ASSIST_PRIORITY", default_value = "P2")]
        priority: Priority,
        /// Why you need access (for a new session).
        #[arg(long, env = "ASSIST_REASON")]
        reason: Option<String>,
        /// How long the new session's grant should last, e.g. 2h.
        #[arg(long = "for", env = "ASSIST_FOR", value_parser = humantime::parse_duration, value_name = "DUR")]
        duration: Option<Duration>,
        /// What a new session asks for (repeatable; in the environment separated by
        /// spaces), e.g. shell files.read:/srv forward:db:5432.
        #[arg(
            long = "capability",
            env = "ASSIST_CAPABILITIES",
            value_delimiter = ' ',
            default_value = "shell",
            value_name = "CAP"
        )]
        capabilities: Vec<Capability>,
    },
    /// Print the ~/.ssh/config block that sends ssh, scp, sftp and rsync to AGENT.assist
    /// through assist ssh-proxy, with the agents' host keys pinned.
    SshConfig,
    /// Pending requests you may answer (approvers), most urgent first.
    Requests {
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request (or escalation): all of it, or less.
    Approve {
        session: SessionId,
        /// Grant only this capability, or a narrower form of it (repeatable), e.g.
        /// --only shell --only files.read:/var/log/erp/today.
        #[arg(long = "only", value_name = "CAP")]
        only: Vec<Capability>,
        /// Grant for less time than asked, e.g. 15m.
        #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DUR")]
        duration: Option<Duration>,
        /// A note shown to the engineer and kept in the audit log.
        #[arg(long)]
        note: Option<String>,
    },
    /// Ask for more capabilities, or more time, in your live session.
    Escalate {
        session: SessionId,
        /// A capability to add, e.g. files.read:/var/log/erp (repeatable).
        #[arg(long = "add", value_name = "CAP")]
        add: Vec<Capability>,
        /// Add this much time to the grant, e.g. 30m: the new expiry is the current one (or
        /// the approval's time, if the grant already ran out) plus DUR.
        #[arg(long = "extend", value_parser = humantime::parse_duration, value_name = "DUR")]
        extend: Option<Duration>,
        #[arg(long)]
        reason: String,
    },
    /// Take capabilities away from a live session; its streams that need them close at once.
    Revoke {
        session: SessionId,
        /// A kind (shell, files.read) or one exact capability (files.read:/var/log)
        /// (repeatable).
        #[arg(long = "capability", value_name = "CAP", required = true)]
        capabilities: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a pending request.
    Deny {
        session: SessionId,
        #[arg(long)]
        reason: String,
    },
    /// Watch a live session's terminal read-only, from its current screen, until it ends
    /// (approvers of the agent's organisation, admins). The engineer is told.
    Watch { session: SessionId },
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

/// Which session a file, exec or logs command works in.
#[derive(clap::Args)]
struct SessionArgs {
    /// Use this live session of yours instead of requesting one.
    #[arg(long, value_name = "S", conflicts_with_all = ["ticket", "reason"])]
    session: Option<SessionId>,
    /// The ticket this work is for (for a new session).
    #[arg(long)]
    ticket: Option<String>,
    #[arg(long, default_value = "P2")]
    priority: Priority,
    /// Why you need access (for a new session).
    #[arg(long)]
    reason: Option<String>,
    /// How long the new session's grant should last.
    #[arg(long = "for", value_parser = humantime::parse_duration, value_name = "DUR")]
    duration: Option<Duration>,
}

impl SessionArgs {
    fn choice(self) -> Result<SessionChoice> {
        match (self.session, self.ticket, self.reason) {
            (Some(s), _, _) => Ok(SessionChoice::Existing(s)),
            (None, Some(ticket), Some(reason)) => Ok(SessionChoice::New {
                ticket,
                priority: self.priority,
                reason,
                duration_secs: self.duration.map(|d| d.as_secs().max(1)),
            }),
            _ => bail!("give --ticket and --reason for a new session, or --session S to use a live one"),
        }
    }
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

/// A code from the user's authenticator app (or a recovery code): the next line of
/// standard input with --password-stdin, else asked on the terminal.
fn read_code(from_stdin: bool) -> Option<String> {
    if !from_stdin {
        if !std::io::stdin().is_terminal() {
            eprintln!("no terminal to ask for the code from your authenticator app");
            return None;
        }
        eprint!("Code from your authenticator app: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let code = line.trim().to_owned();
    (!code.is_empty()).then_some(code)
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
    let explicit_dir = cli.config_dir.clone();
    let cfg = ConfigDir::locate(cli.config_dir)?;
    match cli.cmd {
        Cmd::Login { relay, user, password_stdin, ca_fingerprint } => {
            let password = read_password(password_stdin)?;
            let mut ask = ask_trust;
            let trust = match ca_fingerprint {
                Some(fp) => Trust::Fingerprint(fp),
                None => Trust::Ask(&mut ask),
            };
            let mut code = || read_code(password_stdin);
            let login = engineer::login(&cfg, &relay, &user, &password, trust, &mut code).await?;
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
            if json { print_json(&reqs)? } else { print!("{}", render::requests(&reqs, clock::now_ms())) }
        }
        Cmd::Sessions { json } => {
            let s = engineer::sessions(&cfg).await?;
            if json { print_json(&s)? } else { print!("{}", render::sessions(&s)) }
        }
        Cmd::Approve { session, only, duration, note } => {
            let only = (!only.is_empty()).then_some(only);
            let secs = duration.map(|d| d.as_secs().max(1));
            eprintln!("{}", text::line(&engineer::approve(&cfg, session, only, secs, note).await?))
        }
        Cmd::Escalate { session, add, extend, reason } => {
            let secs = extend.map(|d| d.as_secs().max(1));
            eprintln!("{}", text::line(&engineer::grant::escalate(&cfg, session, add, secs, reason).await?))
        }
        Cmd::Revoke { session, capabilities, reason } => {
            eprintln!("{}", text::line(&engineer::revoke(&cfg, session, capabilities, reason).await?))
        }
        Cmd::Deny { session, reason } => {
            eprintln!("{}", text::line(&engineer::deny(&cfg, session, reason).await?))
        }
        Cmd::Watch { session } => {
            let end = engineer::watch::run(&cfg, session).await?;
            eprintln!("\r\nassist: {}", text::line(&end));
        }
        Cmd::End { session, reason } => {
            eprintln!("{}", text::line(&engineer::end(&cfg, session, reason).await?))
        }
        Cmd::Cp { recursive, resume, force, limit_rate, src, dst, session } => {
            let opts = Options { force, resume, limit: limit_rate, quiet: false };
            let req = CopyRequest { src, dst, recursive, opts, session: session.choice()? };
            return Ok(engineer::cp::run(&cfg, req).await?);
        }
        Cmd::Ls { target, json, session } => {
            let Side::Remote { agent, path } = Side::parse(&target) else {
                bail!("give AGENT:/absolute/path");
            };
            let cap = Capability::FilesRead { roots: vec![path.trim_end_matches('/').to_owned()] };
            let live = engineer::session::open(&cfg, &agent, session.choice()?, vec![cap]).await?;
            let listed = engineer::cp::list(&live, &path, false).await;
            live.finish(assist_proto::session::Work::Listing, listed.is_ok()).await;
            let (_, entries) = listed?;
            if json { print_json(&entries)? } else { print!("{}", render::entries(&entries)) }
        }
        Cmd::Exec { agent, name, session } => {
            return Ok(engineer::exec::run(&cfg, &agent, &name, session.choice()?).await?);
        }
        Cmd::Forward { agent, forwards, session } => {
            return Ok(engineer::forward::run(&cfg, &agent, forwards, session.choice()?).await?);
        }
        Cmd::Logs { agent, since, output, paths, session } => {
            let since = since.map(|d| clock::now_ms() - d.as_millis() as i64);
            let out = output
                .unwrap_or_else(|| PathBuf::from(format!("{agent}-logs-{}.tar.gz", clock::now_ms() / 1000)));
            let (files, bytes, archive) =
                engineer::logs::run(&cfg, &agent, paths, since, &out, session.choice()?).await?;
            eprintln!(
                "assist: wrote {}: {files} files, {} ({} compressed), manifest in MANIFEST.json",
                out.display(),
                assist_proto::files::fmt_size(bytes),
                assist_proto::files::fmt_size(archive)
            );
        }
        Cmd::SshProxy { host, session, ticket, priority, reason, duration, capabilities } => {
            let choice = match (session, ticket, reason) {
                (Some(s), _, _) => SessionChoice::Existing(s),
                (None, Some(ticket), Some(reason)) => SessionChoice::New {
                    ticket,
                    priority,
                    reason,
                    duration_secs: duration.map(|d| d.as_secs().max(1)),
                },
                _ => bail!(
                    "set ASSIST_TICKET and ASSIST_REASON for a new session, or ASSIST_SESSION to use a live one"
                ),
            };
            let req = engineer::ssh::ProxyRequest { host, choice, capabilities };
            return Ok(engineer::ssh::run(&cfg, req).await?);
        }
        Cmd::SshConfig => {
            let keys = engineer::ssh::hostkey::HostKeys::new(&cfg);
            // Agents already known get their keys now; others on first use.
            let mut pinned = Vec::new();
            match engineer::agents(&cfg).await {
                Ok(agents) => {
                    for a in agents {
                        let key = keys.for_agent(&a.name)?;
                        pinned.push((a.name, key));
                    }
                }
                Err(e) => eprintln!("assist: not listing agents ({e}); their keys are made on first use"),
            }
            let exe = std::env::current_exe().context("locating this program")?;
            print!(
                "{}",
                engineer::ssh::config::block(&exe, explicit_dir.as_deref(), &keys.known_hosts(), &pinned)
            );
        }
        Cmd::Desktop {
            agent,
            ticket,
            priority,
            reason,
            control,
            clipboard,
            duration,
            console,
            no_browser,
        } => {
            assist_proto::text::check_ticket(&ticket)?;
            assist_proto::text::check_reason("reason", &reason)?;
            let console = match console {
                Some(c) => c,
                None => {
                    engineer::desktop::default_console(&cfg.load_login(assist_client::clock::now_ms())?.relay)
                }
            };
            let ask = engineer::desktop::DesktopAsk {
                agent: agent.to_string(),
                ticket,
                priority,
                reason,
                control,
                clipboard,
                minutes: duration.as_secs().div_ceil(60).max(1),
            };
            let url = engineer::desktop::viewer_url(&console, &ask);
            println!("{url}");
            if !no_browser {
                // The desktop's own browser; a missing opener is not an error: the address
                // is printed above.
                let opened = std::process::Command::new("xdg-open")
                    .arg(&url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                if opened.is_err() {
                    eprintln!("assist: cannot open a browser here; open the address above in yours");
                }
            }
        }
        Cmd::Shell { agent, ticket, priority, reason, tty, no_tty, duration, also, command } => {
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
                also,
                duration_secs: duration.map(|d| d.as_secs().max(1)),
            };
            return Ok(engineer::shell::run(&cfg, req).await?);
        }
    }
    Ok(0)
}

/// Runs `work` unless SIGINT (Ctrl-C outside a raw terminal), SIGTERM or SIGHUP comes
/// while it holds a connection to the relay. Then the work is dropped (a raw terminal is
/// restored), the relay is told that the engineer interrupted the client, and the exit
/// code is 128 + the signal's number, as a shell reports it.
///
/// The signals are caught only from the first connection on: before it, the prompts
/// (password, trusting a relay) read the terminal on this thread, and a signal must stop
/// the process there as it always does.
async fn until_interrupted(work: impl std::future::Future<Output = Result<i32>>) -> Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let stopped = async {
        assist_client::conn::first_opened().await;
        let caught =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()));
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = caught else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
        }
    };
    let number = tokio::select! {
        done = work => return done,
        number = stopped => number,
    };
    assist_client::conn::interrupt_all().await;
    eprintln!("assist: interrupted");
    Ok(128 + number)
}

/// A listing whose reader went away (`assist sessions | head -1`) stops as `head`'s other
/// writers do, by SIGPIPE, instead of panicking on the next `println!` (Rust ignores
/// SIGPIPE by default). Only for listings: commands that hold a session close it first.
#[allow(unsafe_code)]
fn stop_quietly_on_closed_stdout() {
    // SAFETY: called before the runtime starts any thread; restoring a signal's default
    // action touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    if matches!(
        cli.cmd,
        Cmd::Agents { .. } | Cmd::Requests { .. } | Cmd::Sessions { .. } | Cmd::Ls { .. } | Cmd::SshConfig
    ) {
        stop_quietly_on_closed_stdout();
    }
    // One thread runs every task: a keystroke or an output chunk moves between tasks
    // without waking another worker, which is most of a round trip on a busy machine.
    // Blocking work (terminal output, stdin) has threads of its own.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    // `assist forward` ends on a signal by itself, cleanly (it is how it is stopped).
    // So does `assist ssh-proxy`, which ssh stops with SIGHUP once it is done.
    let forward = matches!(cli.cmd, Cmd::Forward { .. } | Cmd::SshProxy { .. });
    let run =
        async { if forward { main_inner(cli).await } else { until_interrupted(main_inner(cli)).await } };
    let code = match rt.block_on(run) {
        Ok(code) => code,
        Err(e) => {
            // Errors carry text from the relay and the other party (reasons, file names).
            eprintln!("assist: {}", assist_proto::text::inert(&format!("{e:#}"), 2000));
            match e.downcast_ref::<EngineerError>() {
                Some(EngineerError::Refused(_)) => 2,
                _ => 1,
            }
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
