//! `assist-relay`: the relay server and its administration commands.
//!
//! This file only parses arguments, prompts for passwords and prints results; the work is
//! done by [`assist_relay::serve`], [`assist_relay::datadir`], [`assist_relay::admin`] and
//! [`assist_relay::audit_cmd`].
//! Results go to stdout (tables for people, `--json` for programs); logs, notes and
//! errors go to stderr, and any error exits with status 1 (2 for bad arguments;
//! `recording verify` has its own statuses for its verdicts).

mod cli;

use anyhow::{Context, bail};
use assist_proto::caps::Role;
use assist_proto::ids::validate_name;
use assist_relay::admin::{self, Revocation};
use assist_relay::audit::admin_actor;
use assist_relay::datadir::DataDir;
use assist_relay::fmt_time as format_time;
use assist_relay::store::Store;
use clap::{Args, Parser, Subcommand};
use cli::keys::AdminKeys;
use cli::table::{join_or_dash, print_rows};
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
    /// Where the state and the audit log are kept, if not in the data directory's
    /// assist.db: postgres://USER@HOST/DB (several relays may share it; no TLS: use
    /// loopback or a Unix socket, ?host=/run/postgresql) or sqlite://PATH. The keys stay
    /// in the data directory (or the --cluster-bundle) either way.
    #[arg(long, global = true, env = "ASSIST_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// The cluster bundle (made once by `assist-relay cluster init`): with `serve`, run as
    /// one relay of a cluster with its keys (needs --relay-name); with an administration
    /// command, take the keys from it instead of a relay's data directory, so that it runs
    /// where there is none. Either way it needs the cluster's PostgreSQL --database.
    #[arg(long, global = true, env = "ASSIST_CLUSTER_BUNDLE", value_name = "FILE")]
    cluster_bundle: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the relay (creating the data directory and a first admin on first start).
    Serve(Box<ServeArgs>),
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
    /// Pre-approved maintenance windows for unattended agents (consent mode `window`).
    #[command(subcommand)]
    Window(cli::window::WindowCommand),
    /// The audit log: list, export for a SIEM, verify its hash chain.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Session recordings: verify, export, replay.
    #[command(subcommand)]
    Recording(cli::recording::RecordingCommand),
    /// The relay's public keys, for verifying recordings away from the relay.
    #[command(subcommand)]
    Keys(cli::recording::KeysCommand),
    /// Outgoing webhooks: signed session events for ticketing systems and chat.
    #[command(subcommand)]
    Webhook(cli::webhook::WebhookCommand),
    /// Several relays as one: the keys they share.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Writes a new cluster bundle (CA, token, grant and secrets keys) for
    /// `serve --cluster-bundle` on every relay of a new cluster. Never overwrites a file.
    Init {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
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
    /// How long a grant lasts when the engineer does not say (`assist shell --for`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DUR")]
    grant_default: Duration,
    /// The longest grant an engineer may ask for, and so the longest any approval lasts.
    #[arg(long, default_value = "4h", value_parser = humantime::parse_duration, value_name = "DUR")]
    grant_max: Duration,
    /// TCP address for a plain-HTTP listener serving only `/api/v1/health` (for load
    /// balancers); off unless given. The console's HTTPS listener serves it too.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// TCP address of the web console (HTTPS); port 0 picks a free port, printed at start.
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    console: SocketAddr,
    /// Do not serve the web console.
    #[arg(long)]
    no_console: bool,
    /// Name (DNS name or IP address) for the console's certificate from the relay CA
    /// (repeatable). Default: localhost and this host's name.
    #[arg(long = "console-name", value_name = "NAME")]
    console_names: Vec<String>,
    /// The console's certificate chain (PEM, leaf first) from your own PKI, instead of
    /// one from the relay CA. Needs --console-key.
    #[arg(long, value_name = "PATH", requires = "console_key")]
    console_cert: Option<PathBuf>,
    /// The private key (PEM) of --console-cert.
    #[arg(long, value_name = "PATH", requires = "console_cert")]
    console_key: Option<PathBuf>,
    /// Roles that must sign in to the console with a second factor (TOTP), comma-separated,
    /// or `none`.
    #[arg(long, default_value = "approver,admin", value_delimiter = ',', value_name = "ROLES")]
    require_mfa: Vec<String>,
    /// A console session unused for this long ends.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, value_name = "DUR")]
    console_idle_timeout: Duration,
    /// A console session ends this long after sign-in, used or not.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration, value_name = "DUR")]
    console_lifetime: Duration,
    /// Longest time an HTTP client may take to send a request's header.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DUR")]
    http_header_timeout: Duration,
    /// An HTTP connection on which nothing moves for this long is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DUR")]
    http_idle_timeout: Duration,
    /// Most open HTTP connections from one address; more are closed at once.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    http_max_per_address: u64,
    /// Most open HTTP connections in all; never more than half the open-file limit (which
    /// the relay raises to its hard limit at start), so that recordings and the database
    /// can always open their files.
    #[arg(long, default_value_t = assist_relay::listen::DEFAULT_TOTAL as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    http_max_connections: u64,
    /// Where session recordings are written: a directory (default: DIR/recordings),
    /// file:///DIR (segment objects on the local file system) or s3://BUCKET/PREFIX (an
    /// S3-compatible store configured by the AWS_* environment variables).
    #[arg(long, alias = "recordings-dir", value_name = "URL")]
    recordings: Option<String>,
    /// This relay's name in a cluster (unique, stable across restarts); serves as one
    /// relay of the cluster with the keys of --cluster-bundle (copied to every relay) and
    /// the PostgreSQL --database shared by the cluster's relays.
    #[arg(long, value_name = "NAME")]
    relay_name: Option<String>,
    /// The UDP address (HOST:PORT) agents use to reach this relay, told to the cluster's
    /// agents (with --relay-name). Default: the --listen address, unless it is a wildcard.
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Run without recording sessions. Only for measuring the recorder's cost (the
    /// benchmark suite) or a laboratory relay: sessions are then not auditable.
    #[arg(long)]
    no_recording: bool,
    /// Largest file transfer an engineer may make (one file, or all files of a recursive
    /// copy or log collection), e.g. 500MiB; a larger one is refused before any byte moves.
    #[arg(long, default_value = "2GiB", value_parser = assist_proto::files::parse_size, value_name = "SIZE")]
    max_transfer: u64,
    /// Most files in one recursive copy or log collection.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_files: u64,
    /// Failed logins of one user name before its next attempts must wait.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    login_failures: u32,
    /// Failed logins from one address before its next attempts must wait.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    login_address_failures: u32,
    /// The first wait after too many failed logins; it doubles with each further failure.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, value_name = "DUR")]
    login_delay: Duration,
    /// The longest wait after failed logins: the lockout.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, value_name = "DUR")]
    login_lockout: Duration,
    /// Refused attempts (by people who may not, forged or expired tokens, foreign
    /// certificates) are audited at once the first time; repeats of the same kind within
    /// this window are counted and audited as one event with their count.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, value_name = "DUR")]
    refusal_window: Duration,
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
    /// Lets a vendor's engineers ask for sessions on an organisation's agents.
    Support {
        /// The supported organisation (the customer).
        name: String,
        #[arg(long = "by", value_name = "ORG")]
        vendor: String,
    },
    /// Stops a vendor supporting an organisation (sessions already granted go on).
    Unsupport {
        name: String,
        #[arg(long = "by", value_name = "ORG")]
        vendor: String,
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
    /// Stops a user signing in; ends their console sessions and revokes their CLI tokens
    /// at once.
    Disable { name: String },
    /// Removes a user; ends their console sessions and revokes their CLI tokens at once.
    Remove { name: String },
    /// Gives a user another role; ends their console sessions and CLI tokens.
    Role {
        name: String,
        #[arg(value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
    },
    /// Gives a user a new random password, printed once; ends their sessions and tokens.
    ResetPassword { name: String },
    /// Lets a disabled user sign in again.
    Enable { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Lists join tokens issued (by their hash prefix; never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
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
                // PostgreSQL's notices ("relation … already exists, skipping" at every
                // migration check) say nothing an operator needs.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn")),
        )
        .with_writer(std::io::stderr)
        // A log nobody reads (stderr a closed pipe) must not stop the relay: by default a
        // failed write is reported with eprintln!, which panics there.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if !matches!(cli.command, Command::Serve(_)) {
        stop_quietly_on_closed_stdout();
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An administration command whose reader went away (`assist-relay audit list | head -1`)
/// stops as `head`'s other writers do, by SIGPIPE, instead of panicking on the next
/// `println!` (Rust ignores SIGPIPE by default). Never for `serve`: a relay must outlive a
/// closed stdout.
#[allow(unsafe_code)]
fn stop_quietly_on_closed_stdout() {
    // SAFETY: called before any thread is started; restoring a signal's default action
    // touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir;
    let command = match cli.command {
        Command::Serve(args) => {
            serve(data_dir, cli.database, cli.cluster_bundle, *args).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Recording(cmd) => {
            let keys = || AdminKeys::open(&data_dir, cli.database.clone(), cli.cluster_bundle.as_ref());
            return cli::recording::recording_command(&data_dir, keys, cmd).await;
        }
        Command::Keys(cmd) => {
            let keys = AdminKeys::open(&data_dir, cli.database, cli.cluster_bundle.as_ref())?;
            return cli::recording::keys_command(&keys, cmd);
        }
        Command::Cluster(ClusterCommand::Init { out }) => {
            let bundle = assist_relay::cluster::bundle::Bundle::generate()?;
            bundle.write_new(&out)?;
            println!("wrote cluster bundle {} (ca {})", out.display(), bundle.ca_fingerprint()?);
            println!(
                "copy it to every relay of the cluster; it holds their keys: keep it as secret as they are"
            );
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };
    let store = AdminKeys::open(&data_dir, cli.database, cli.cluster_bundle.as_ref())?.store().await?;
    let result = admin_command(store.as_ref(), command).await;
    store.close().await;
    result
}

/// The console's listener from `serve`'s flags.
fn console_listen(args: &ServeArgs) -> anyhow::Result<Option<assist_relay::serve::ConsoleListen>> {
    if args.no_console {
        return Ok(None);
    }
    let mut require_mfa = Vec::new();
    for role in args.require_mfa.iter().map(|r| r.trim()).filter(|r| !r.is_empty() && *r != "none") {
        let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--require-mfa: {e}"))?;
        require_mfa.push(role.to_string());
    }
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if args.console_idle_timeout.is_zero() || args.console_lifetime.is_zero() {
        bail!("--console-idle-timeout and --console-lifetime must be more than zero");
    }
    let cert = match (&args.console_cert, &args.console_key) {
        (Some(cert), Some(key)) => {
            assist_relay::console_tls::ConsoleCert::Files { cert: cert.clone(), key: key.clone() }
        }
        _ => assist_relay::console_tls::ConsoleCert::Issued {
            names: if args.console_names.is_empty() {
                assist_relay::console_tls::ConsoleCert::default_names()
            } else {
                args.console_names.clone()
            },
        },
    };
    Ok(Some(assist_relay::serve::ConsoleListen {
        addr: args.console,
        cert,
        auth: assist_relay::console_state::ConsoleAuthConfig {
            require_mfa,
            idle_ms: ms(args.console_idle_timeout),
            absolute_ms: ms(args.console_lifetime),
        },
    }))
}

async fn serve(
    data_dir: PathBuf,
    database: Option<String>,
    cluster_bundle: Option<PathBuf>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    if args.grant_default.is_zero() || args.grant_default > args.grant_max {
        bail!("--grant-default must be more than zero and at most --grant-max");
    }
    if args.http_header_timeout.is_zero() || args.http_idle_timeout.is_zero() {
        bail!("--http-header-timeout and --http-idle-timeout must be more than zero");
    }
    if args.login_delay.is_zero() || args.login_delay > args.login_lockout {
        bail!("--login-delay must be more than zero and at most --login-lockout");
    }
    match (&cluster_bundle, &args.relay_name, &args.advertise) {
        (Some(_), None, _) => {
            bail!("serve --cluster-bundle needs --relay-name: each relay of a cluster has its own")
        }
        (None, Some(_), _) | (None, _, Some(_)) => {
            bail!("--relay-name and --advertise are for a relay of a cluster: they need --cluster-bundle")
        }
        _ => {}
    }
    let (dir, first_admin) = match &cluster_bundle {
        None => DataDir::init_or_open(&data_dir, &args.server_names).await?,
        Some(file) => {
            cli::keys::need_postgres(database.as_deref())?;
            let name = args.relay_name.as_deref().unwrap_or_default();
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("--relay-name: 1 to 64 letters, digits, '-', '_' or '.'");
            }
            let bundle = assist_relay::cluster::bundle::Bundle::read(file)?;
            DataDir::init_or_open_cluster(&data_dir, &args.server_names, &bundle).await?
        }
    };
    let dir = dir.with_database(database).with_relay_name(args.relay_name.clone());
    // On another database, the directory's own assist.db holds nobody who matters: the
    // first administrator is the one made in that database, on its first start.
    let first_admin = match dir.database() {
        None => first_admin,
        Some(_) => dir.first_start_database().await?,
    };
    if let Some(admin) = first_admin {
        let mut out = std::io::stdout().lock();
        let shown = writeln!(out, "created data directory {}", dir.path().display())
            .and_then(|()| writeln!(out, "admin user: {}", admin.user))
            .and_then(|()| writeln!(out, "admin password: {}", admin.password))
            .and_then(|()| writeln!(out, "(the password is shown only this once)"))
            .and_then(|()| out.flush());
        // The data directory exists now: stopping would not bring the password back, and
        // the log is no place for it. Say how to get an admin instead, and serve.
        if let Err(e) = shown {
            tracing::warn!(
                error = %e,
                "the first admin's password could not be shown (stdout not writable); add an admin with \
                 `assist-relay user add NAME --org operator --role admin --password-stdin`"
            );
        }
    }
    assist_relay::serve::run(assist_relay::serve::ServeConfig {
        data_dir: dir,
        listen: args.listen,
        consent_timeout: args.consent_timeout,
        urgent_consent_timeout: args.urgent_consent_timeout,
        grant_default: args.grant_default,
        grant_max: args.grant_max,
        token_ttl: args.token_ttl,
        http: args.http,
        console: console_listen(&args)?,
        http_limits: assist_relay::listen::Limits {
            header_timeout: args.http_header_timeout,
            idle_timeout: args.http_idle_timeout,
            per_address: usize::try_from(args.http_max_per_address).unwrap_or(usize::MAX),
            total: usize::try_from(args.http_max_connections).unwrap_or(usize::MAX),
        },
        recordings: args.recordings,
        recording: !args.no_recording,
        transfer_limits: assist_proto::files::TransferLimits {
            max_bytes: args.max_transfer,
            max_files: args.max_files,
        },
        login_throttle: assist_relay::broker::throttle::ThrottleConfig {
            user_failures: args.login_failures,
            address_failures: args.login_address_failures,
            delay: args.login_delay,
            lockout: args.login_lockout,
        },
        refusal_window: args.refusal_window,
        relay_name: args.relay_name.clone(),
        advertise: args.advertise.clone(),
    })
    .await?;
    Ok(())
}

/// Who runs an administration command, for the audit log: `admin-cli:USER`. Informative,
/// not authenticated: anyone who can write the database can claim any name.
fn actor() -> String {
    admin_actor(os_user().as_deref())
}

/// The login name from the environment, or else (a service, a container) the name of the
/// process's user in `/etc/passwd`, or `uidN`.
fn os_user() -> Option<String> {
    if let Some(user) =
        ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    {
        return Some(user);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let name = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
        });
        Some(name.unwrap_or_else(|| format!("uid{uid}")))
    }
    #[cfg(not(unix))]
    None
}

async fn admin_command(store: &dyn Store, command: Command) -> anyhow::Result<ExitCode> {
    let now = assist_relay::now_ms();
    let actor = actor();
    match command {
        Command::Serve(_) | Command::Recording(_) | Command::Keys(_) | Command::Cluster(_) => {
            unreachable!("handled by run")
        }
        Command::Audit(audit) => return cli::audit::run(store, audit, now).await,
        Command::Window(cmd) => cli::window::run(store, cmd, &actor, now).await?,
        Command::Webhook(cmd) => cli::webhook::run(store, cmd, &actor, now).await?,
        Command::Org(OrgCommand::Add { name, supported_by }) => {
            admin::org_add(store, &name, &supported_by, &actor, now).await?;
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
            admin::user_add(store, &name, &org, role, &password, &actor, now).await?;
            eprintln!("added {role} {name} to {org}");
        }
        Command::User(UserCommand::List { json }) => {
            let users = admin::user_list(store).await?;
            print_rows(json, &users, &["NAME", "ORG", "ROLE", "CREATED"], |u| {
                vec![u.name.to_string(), u.org.to_string(), u.role.to_string(), format_time(u.created_at)]
            })?;
        }
        Command::User(UserCommand::Disable { name }) => {
            assist_relay::admin_users::user_disable(store, &name, &actor, now).await?;
            eprintln!("disabled {name}: console sessions ended, CLI tokens revoked");
        }
        Command::User(UserCommand::Remove { name }) => {
            assist_relay::admin_users::user_remove(store, &name, &actor, now).await?;
            eprintln!("removed {name}: console sessions ended, CLI tokens revoked");
        }
        Command::Org(OrgCommand::Support { name, vendor }) => {
            if assist_relay::admin_accounts::org_support(store, &name, &vendor, true, &actor, now).await? {
                eprintln!("{vendor}'s engineers may now ask for sessions on {name}'s agents");
            } else {
                eprintln!("{vendor} already supports {name}");
            }
        }
        Command::Org(OrgCommand::Unsupport { name, vendor }) => {
            if assist_relay::admin_accounts::org_support(store, &name, &vendor, false, &actor, now).await? {
                eprintln!("{vendor} no longer supports {name}");
            } else {
                eprintln!("{vendor} did not support {name}");
            }
        }
        Command::User(UserCommand::Role { name, role }) => {
            if assist_relay::admin_accounts::user_set_role(store, &name, role, &actor, now).await? {
                eprintln!("{name} is now {role}: console sessions ended, CLI tokens revoked");
            } else {
                eprintln!("{name} already is {role}");
            }
        }
        Command::User(UserCommand::ResetPassword { name }) => {
            let password =
                assist_relay::admin_accounts::user_reset_password(store, &name, &actor, now).await?;
            println!("{password}");
            eprintln!("new password for {name} (shown only now): console sessions ended, CLI tokens revoked");
        }
        Command::User(UserCommand::Enable { name }) => {
            if assist_relay::admin_accounts::user_enable(store, &name, &actor, now).await? {
                eprintln!("{name} may sign in again");
            } else {
                eprintln!("{name} was not disabled");
            }
        }
        Command::Token(TokenCommand::List { json }) => {
            let tokens = assist_relay::admin_accounts::token_list(store).await?;
            print_rows(json, &tokens, &["TOKEN", "ORG", "CREATED", "EXPIRES", "USED"], |t| {
                vec![
                    t.id.clone(),
                    t.org.to_string(),
                    format_time(t.created_at),
                    format_time(t.expires_at),
                    t.used_at.map_or_else(|| "-".to_owned(), format_time),
                ]
            })?;
        }
        Command::Token(TokenCommand::Create { org, ttl }) => {
            let token = admin::token_create(store, &org, ttl, &actor, now).await?;
            let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            println!("{token}");
            eprintln!("single-use join token for {org}, valid until {}", format_time(expires));
        }
        Command::Agent(AgentCommand::List { json }) => {
            let agents = admin::agent_list(store).await?;
            let headers = ["NAME", "ORG", "ONLINE", "RELAYS", "CONSENT", "ENROLLED", "LAST SEEN", "REVOKED"];
            print_rows(json, &agents, &headers, |a| {
                vec![
                    a.name.to_string(),
                    a.org.to_string(),
                    if a.online { "yes" } else { "no" }.to_owned(),
                    join_or_dash(&a.relays),
                    a.consent.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    format_time(a.enrolled_at),
                    a.last_seen.map_or_else(|| "-".to_owned(), format_time),
                    a.revoked_at.map_or_else(|| "-".to_owned(), format_time),
                ]
            })?;
        }
        Command::Agent(AgentCommand::Revoke { name }) => {
            match admin::agent_revoke(store, &name, &actor, now).await? {
                Revocation::Revoked { .. } => eprintln!("revoked agent {name}"),
                Revocation::AlreadyRevoked { at } => {
                    eprintln!("agent {name} was already revoked at {}", format_time(at));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    // Only the line ending is removed: spaces may be part of a password.
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

fn password_from_prompt(user: &str) -> anyhow::Result<String> {
    // The prompt reads the controlling terminal; a script, a service or a container has
    // none ("No such device or address").
    let first = rpassword::prompt_password(format!("Password for {user}: ")).map_err(|e| {
        anyhow::anyhow!(
            "cannot ask for the password: no terminal ({e}); give it on standard input with --password-stdin"
        )
    })?;
    // Said before asking a second time for a password that would be refused anyway.
    if first.chars().count() < admin::MIN_PASSWORD_CHARS {
        bail!("password too short: use at least {} characters", admin::MIN_PASSWORD_CHARS);
    }
    let second = rpassword::prompt_password("Repeat it: ").context("reading the password")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}
