//! The idle-agent load process, run as helper commands of `assist-bench`:
//!
//! - `idle-enroll`: creates N join tokens in the relay's store (or `--database`) with the
//!   administration commands' code (the relay keeps running; SQLite in WAL mode allows it), then enrolls N agents through the relay with
//!   the product's protocol (`AgentToRelay::Enroll`, a key and CSR made here), a bounded
//!   number at a time, and writes each agent's certificate and key as one JSON line.
//! - `idle-load`: connects the first N of those agents from ONE client endpoint (one UDP
//!   socket for all), each with its own certificate, says `Hello` on the control stream as
//!   `assist-agent run` does (`--cluster`: as an agent that keeps a connection to every
//!   relay of a cluster), waits for `Welcome`, and then holds every connection idle
//!   (quinn's keep-alives only). It prints `connected OK failed F`, and answers a `check`
//!   line on stdin with `alive K`. It ends when stdin closes.
//!
//! It runs no processes and serves no channels: an idle agent does neither.

use anyhow::{Context, Result, anyhow, bail};
use assist_certs::{AgentKey, Fingerprint};
use assist_net::ClientIdentity;
use assist_proto::caps::ConsentMode;
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, RelayToAgent};
use assist_relay::datadir::DataDir;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// One enrolled agent's identity, as a line of the identities file.
#[derive(Serialize, Deserialize)]
struct Identity {
    name: String,
    cert_pem: String,
    key_pem: String,
}

/// `idle-enroll`.
#[allow(clippy::too_many_arguments)]
pub async fn enroll(
    data: &Path,
    database: Option<String>,
    relay: SocketAddr,
    ca: Fingerprint,
    org: &str,
    n: usize,
    out: &Path,
    parallel: usize,
) -> Result<()> {
    let tokens = join_tokens(data, database, org, n).await?;
    eprintln!("idle-enroll: {n} join tokens stored");

    let endpoint = assist_net::client_endpoint(relay)?;
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let r = enroll_one(&endpoint, relay, ca, format!("idle-{i:05}"), token).await;
            drop(permit);
            r
        });
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        let id = r??;
        serde_json::to_writer(&mut file, &id)?;
        file.write_all(b"\n")?;
        done += 1;
        if done % 1000 == 0 {
            eprintln!("idle-enroll: {done}/{n} enrolled");
        }
    }
    file.flush()?;
    println!("enrolled {done}");
    Ok(())
}

/// `n` single-use join tokens for `org`, stored with the administration command's own code
/// in the relay's store (its data directory's, or `database`) while the relay runs.
pub async fn join_tokens(data: &Path, database: Option<String>, org: &str, n: usize) -> Result<Vec<String>> {
    let dir = DataDir::open(data)?.with_database(database);
    let store = dir.store().await?;
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        // Stored as a hash, single use.
        let ttl = Duration::from_secs(6 * 3600);
        tokens.push(
            assist_relay::admin::token_create(
                store.as_ref(),
                org,
                ttl,
                "admin-cli:bench",
                assist_relay::now_ms(),
            )
            .await?,
        );
    }
    store.close().await;
    Ok(tokens)
}

async fn enroll_one(
    endpoint: &Endpoint,
    relay: SocketAddr,
    ca: Fingerprint,
    name: String,
    token: String,
) -> Result<Identity> {
    let key = AgentKey::generate(&name)?;
    let conn = assist_net::connect(endpoint, relay, ca, None).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let msg = AgentToRelay::Enroll { token, name: AgentName::new(&name), csr_pem: key.csr_pem.clone() };
    assist_net::write_msg(&mut send, &msg).await?;
    let reply = assist_net::read_msg::<RelayToAgent, _>(&mut recv).await?;
    conn.close(assist_net::codes::OK, b"done");
    match reply {
        Some(RelayToAgent::Enrolled { cert_pem, .. }) => {
            Ok(Identity { name, cert_pem, key_pem: key.key_pem })
        }
        other => bail!("enrollment of {name} refused: {other:?}"),
    }
}

/// Tries per agent connection before it counts as failed.
const ATTEMPTS: usize = 3;

/// A held agent connection: the connection and its control stream.
type Held = (Connection, SendStream, RecvStream);

/// `idle-load`.
pub async fn hold(
    relay: SocketAddr,
    ca: Fingerprint,
    identities: &Path,
    n: usize,
    parallel: usize,
    cluster: bool,
) -> Result<()> {
    let text = std::fs::read_to_string(identities).with_context(|| identities.display().to_string())?;
    let ids: Vec<Identity> = text.lines().take(n).map(serde_json::from_str).collect::<Result<_, _>>()?;
    if ids.len() < n {
        bail!("only {} identities in {}, {n} asked for", ids.len(), identities.display());
    }
    let endpoint = assist_net::client_endpoint(relay)?;
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    for id in ids {
        let permit = gate.clone().acquire_owned().await?;
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            // A handshake lost on a loaded machine is retried, as the agent's reconnect does.
            let mut r = hold_one(&endpoint, relay, ca, &id, cluster).await;
            for _ in 1..ATTEMPTS {
                if r.is_ok() {
                    break;
                }
                r = hold_one(&endpoint, relay, ca, &id, cluster).await;
            }
            drop(permit);
            r
        });
    }
    let mut held: Vec<Held> = Vec::with_capacity(n);
    let mut failed = 0usize;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(h) => held.push(h),
            Err(e) => {
                if failed == 0 {
                    eprintln!("idle-load: first failure: {e:#}");
                }
                failed += 1;
            }
        }
    }
    println!("connected {} failed {failed}", held.len());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "check" {
            let alive = held.iter().filter(|(c, _, _)| c.close_reason().is_none()).count();
            println!("alive {alive}");
        }
    }
    for (conn, _, _) in &held {
        conn.close(assist_net::codes::OK, b"done");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

async fn hold_one(
    endpoint: &Endpoint,
    relay: SocketAddr,
    ca: Fingerprint,
    id: &Identity,
    cluster: bool,
) -> Result<Held> {
    let identity = ClientIdentity {
        chain: assist_certs::certs_from_pem(&id.cert_pem)?,
        key: assist_certs::key_from_pem(&id.key_pem)?,
    };
    let conn = assist_net::connect(endpoint, relay, ca, Some(identity)).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = AgentToRelay::Hello {
        consent: ConsentMode::Approver,
        version: env!("CARGO_PKG_VERSION").into(),
        scripts: None,
        desktop: None,
        // A cluster's relay welcomes it with the list of relays, as it does the agent.
        cluster,
    };
    assist_net::write_msg(&mut send, &hello).await?;
    match tokio::time::timeout(Duration::from_secs(30), assist_net::read_msg::<RelayToAgent, _>(&mut recv))
        .await
    {
        Ok(Ok(Some(RelayToAgent::Welcome { .. }))) => Ok((conn, send, recv)),
        Ok(other) => Err(anyhow!("{}: no welcome: {other:?}", id.name)),
        Err(_) => Err(anyhow!("{}: no welcome within 30 s", id.name)),
    }
}
