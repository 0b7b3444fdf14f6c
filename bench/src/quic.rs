//! The bare QUIC baselines, run as helper processes of `assist-bench`:
//!
//! - `quic-server`: serves one file on one stream per connection (the direct-quinn bulk
//!   baseline); `quic-client` fetches it and prints the byte count. Asked for `e` instead,
//!   the server echoes the stream back (the direct-quinn echo baseline), and `quic-client
//!   --echo N` times N one-byte round trips.
//! - `bare-server`: holds idle connections (the idle-agent baseline). For each connection
//!   it accepts the first bidirectional stream, reads one frame, answers one frame, and
//!   keeps both open: the least an application can do with an agent's connection.
//!
//! Both servers are built exactly like the relay's endpoint (`assist_net::server_endpoint`:
//! the same rustls configuration on aws-lc-rs, the same transport settings, the relay's
//! own certificate and CA from its data directory), and the client is the engineer's
//! (`assist_net::connect`, pinned CA): only the relay's work is missing.

use anyhow::{Context, Result, anyhow, bail};
use assist_certs::Fingerprint;
use assist_proto::ids::{AgentName, OrgName};
use assist_proto::msg::RelayToAgent;
use assist_relay::datadir::DataDir;
use quinn::Endpoint;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Binds a server endpoint like the relay's, on 127.0.0.1 port 0, with the relay's
/// certificate from `data`, and prints `listening on ADDR`.
fn server(data: &Path) -> Result<Endpoint> {
    let dir = DataDir::open(data)?;
    let chain = assist_certs::certs_from_pem(&dir.server_chain_pem()?)?;
    let key = assist_certs::key_from_pem(&dir.server_key_pem()?)?;
    let ca = assist_certs::certs_from_pem(dir.ca_cert_pem())?.remove(0);
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let endpoint = assist_net::server_endpoint(listen, chain, key, ca, b"assist-bench reset secret")?;
    println!("listening on {}", endpoint.local_addr()?);
    Ok(endpoint)
}

/// `quic-server`: every connection gets `file` on its first bidirectional stream.
pub async fn serve_file(data: &Path, file: PathBuf) -> Result<()> {
    let endpoint = server(data)?;
    while let Some(incoming) = endpoint.accept().await {
        let file = file.clone();
        tokio::spawn(async move {
            if let Err(e) = send_file(incoming, &file).await {
                eprintln!("quic-server: {e:#}");
            }
        });
    }
    Ok(())
}

async fn send_file(incoming: quinn::Incoming, file: &Path) -> Result<()> {
    let conn = incoming.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut request = [0u8; 1];
    recv.read_exact(&mut request).await?;
    if request == *b"e" {
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            send.write_all(&chunk.bytes).await?;
        }
        send.finish()?;
        return Ok(());
    }
    let mut f = std::fs::File::open(file)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // The file is in the page cache: a blocking read here costs microseconds.
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        send.write_all(&buf[..n]).await?;
    }
    send.finish()?;
    let _ = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    Ok(())
}

/// `quic-client`: fetches the file and prints how many bytes arrived.
pub async fn fetch(addr: SocketAddr, ca: Fingerprint) -> Result<u64> {
    let endpoint = assist_net::client_endpoint(addr)?;
    let conn = assist_net::connect(&endpoint, addr, ca, None).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(b"g").await?;
    send.finish()?;
    let mut total = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        total += chunk.bytes.len() as u64;
    }
    // As `assist` closes its connection, so that both clients end the same way.
    assist_net::close_and_flush(&conn, assist_net::codes::OK, b"done", Duration::from_secs(1)).await;
    drop(endpoint);
    Ok(total)
}

/// `quic-client --echo N`: N one-byte round trips through the server's echo, `gap`
/// apart; each round trip's time in microseconds.
pub async fn echo(addr: SocketAddr, ca: Fingerprint, n: usize, gap: Duration) -> Result<Vec<f64>> {
    let endpoint = assist_net::client_endpoint(addr)?;
    let conn = assist_net::connect(&endpoint, addr, ca, None).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(b"e").await?;
    let mut samples = Vec::with_capacity(n);
    let mut back = [0u8; 1];
    for _ in 0..n {
        let sent = std::time::Instant::now();
        send.write_all(b"x").await?;
        recv.read_exact(&mut back).await?;
        samples.push(sent.elapsed().as_secs_f64() * 1e6);
        tokio::time::sleep(gap).await;
    }
    send.finish()?;
    assist_net::close_and_flush(&conn, assist_net::codes::OK, b"done", Duration::from_secs(1)).await;
    Ok(samples)
}

/// `bare-server`: holds every connection with its first stream until the peer leaves.
pub async fn bare(data: &Path) -> Result<()> {
    let endpoint = server(data)?;
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
            if !matches!(assist_net::read_msg::<serde_json::Value, _>(&mut recv).await, Ok(Some(_))) {
                return;
            }
            let welcome = RelayToAgent::Welcome {
                agent: AgentName::new("bare"),
                org: OrgName::new("bare"),
                cluster: None,
            };
            if assist_net::write_msg(&mut send, &welcome).await.is_err() {
                return;
            }
            while let Ok(Some(_)) = assist_net::read_msg::<serde_json::Value, _>(&mut recv).await {}
            drop(conn);
        });
    }
    Ok(())
}

/// Starts `quic-server` (with the relay's certificate from `data`, serving `file`) and
/// returns it with its address.
pub fn spawn_server(ctx: &crate::Ctx, data: &Path, file: &Path) -> Result<(crate::procs::Proc, SocketAddr)> {
    let mut cmd = ctx.helper(&["quic-server", "--data-dir"]);
    cmd.arg(data).arg("--file").arg(file);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut server = crate::procs::Proc::spawn("quic-server", &mut cmd)?;
    let mut out = server.stdout_lines()?;
    let addr = listening_addr(&out.wait_for("listening on", crate::world::START)?.text)?;
    out.forward(None);
    Ok((server, addr))
}

/// Parses the `listening on ADDR` line of a helper server.
pub fn listening_addr(line: &str) -> Result<SocketAddr> {
    let addr = line.rsplit(' ').next().ok_or_else(|| anyhow!("bad line {line:?}"))?;
    addr.parse().with_context(|| format!("bad address in {line:?}"))
}

/// Checks that a fetched byte count is the file's size.
pub fn check_size(got: u64, want: u64) -> Result<()> {
    if got != want {
        bail!("direct quinn transfer delivered {got} bytes, expected {want}");
    }
    Ok(())
}
