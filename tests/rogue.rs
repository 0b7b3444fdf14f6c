//! A modified engineer client and a rogue relay, for the consent-bypass suite. Both speak
//! the real protocol with the real crates, and send what the real binaries never would:
//! channels the grant does not cover, other people's sessions, forged, replayed and
//! expired grants.

use crate::Cli;
use anyhow::{Context, Result, anyhow, bail};
use assist_net::{read_msg, write_msg};
use assist_proto::caps::Capability;
use assist_proto::grant::{Grant, SignedGrant};
use assist_proto::msg::{
    AgentChannelOpen, AgentToRelay, ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, RelayToAgent,
    RelayToEngineer,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STEP, f).await.map_err(|_| anyhow!("timed out: {what}"))?
}

/// An engineer connection authenticated with the token a real `assist login` cached.
pub struct RogueEngineer {
    _endpoint: Endpoint,
    pub conn: Connection,
    send: SendStream,
    recv: RecvStream,
}

impl RogueEngineer {
    pub async fn connect(cli: &Cli) -> Result<Self> {
        assist_net::install_crypto_provider();
        let login: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cli.dir.path().join("login.json"))?)?;
        let field =
            |k: &str| login[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("login.json lacks {k}"));
        let addr: SocketAddr = field("relay")?.parse()?;
        let fp = field("ca_fingerprint")?.parse().map_err(|e| anyhow!("{e}"))?;
        let endpoint = assist_net::client_endpoint(addr)?;
        let conn = assist_net::connect(&endpoint, addr, fp, None).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_msg(&mut send, &EngineerToRelay::Auth { token: field("token")? }).await?;
        match read_msg::<RelayToEngineer, _>(&mut recv).await? {
            Some(RelayToEngineer::Authenticated { .. }) => Ok(Self { _endpoint: endpoint, conn, send, recv }),
            other => bail!("not authenticated: {other:?}"),
        }
    }

    pub async fn call(&mut self, msg: &EngineerToRelay) -> Result<RelayToEngineer> {
        within("a reply on the control stream", async {
            write_msg(&mut self.send, msg).await?;
            read_msg(&mut self.recv).await?.ok_or_else(|| anyhow!("control stream closed"))
        })
        .await
    }

    /// The next message on the control stream.
    pub async fn next(&mut self) -> Result<RelayToEngineer> {
        within("a message on the control stream", async {
            read_msg(&mut self.recv).await?.ok_or_else(|| anyhow!("control stream closed"))
        })
        .await
    }

    /// Opens a channel with any header and returns the answer, and the stream if accepted.
    pub async fn open(&self, open: &ChannelOpen) -> Result<(ChannelReply, SendStream, RecvStream)> {
        within("a channel reply", async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            write_msg(&mut send, open).await?;
            let reply =
                read_msg::<ChannelReply, _>(&mut recv).await?.ok_or_else(|| anyhow!("no channel reply"))?;
            Ok((reply, send, recv))
        })
        .await
    }
}

/// A command channel header.
pub fn command(session: &str, argv: &[&str]) -> ChannelOpen {
    ChannelOpen {
        session: session.into(),
        report_exit: false,
        channel: ChannelKind::Shell {
            pty: None,
            command: Some(argv.iter().map(|s| s.to_string()).collect()),
        },
    }
}

/// A relay impostor on the real relay's address, with its certificate and keys (as after
/// a compromise of the relay host): what can it make an enrolled agent do?
pub struct RogueRelay {
    endpoint: Endpoint,
    pub grant_key: aws_lc_rs::signature::Ed25519KeyPair,
}

impl RogueRelay {
    pub fn start(data_dir: &Path, addr: SocketAddr) -> Result<Self> {
        assist_net::install_crypto_provider();
        let dir = assist_relay::datadir::DataDir::open(data_dir)?;
        let ca = dir.ca()?;
        let chain = assist_certs::certs_from_pem(&dir.server_chain_pem()?)?;
        let key = assist_certs::key_from_pem(&dir.server_key_pem()?)?;
        let ca_der = assist_certs::certs_from_pem(ca.cert_pem())?.remove(0);
        // The relay's own reset key, so agents drop their old connection at once.
        let reset = assist_relay::serve::reset_secret(&ca);
        let endpoint = assist_net::server_endpoint(addr, chain, key, ca_der, &reset)?;
        Ok(Self { endpoint, grant_key: dir.grant_key()? })
    }

    /// Waits for an agent to connect, and welcomes it as `name` of `org`.
    pub async fn accept_agent(&self, name: &str, org: &str) -> Result<RogueLink> {
        let incoming = tokio::time::timeout(Duration::from_secs(45), self.endpoint.accept())
            .await
            .context("no agent reconnected")?
            .ok_or_else(|| anyhow!("endpoint closed"))?;
        let conn = within("the agent's handshake", async { Ok(incoming.await?) }).await?;
        let (mut send, mut recv) =
            within("the agent's control stream", async { Ok(conn.accept_bi().await?) }).await?;
        match read_msg::<AgentToRelay, _>(&mut recv).await? {
            Some(AgentToRelay::Hello { .. }) => {}
            other => bail!("expected hello, got {other:?}"),
        }
        write_msg(&mut send, &RelayToAgent::Welcome { agent: name.into(), org: org.into(), cluster: None })
            .await?;
        Ok(RogueLink { conn, send, _recv: recv })
    }
}

pub struct RogueLink {
    conn: Connection,
    send: SendStream,
    _recv: RecvStream,
}

impl RogueLink {
    pub async fn send(&mut self, msg: &RelayToAgent) -> Result<()> {
        Ok(write_msg(&mut self.send, msg).await?)
    }

    /// Opens a channel on the agent with `grant` and returns the agent's answer.
    pub async fn channel(&self, open: ChannelOpen, grant: SignedGrant) -> Result<ChannelReply> {
        within("the agent's channel reply", async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            write_msg(&mut send, &AgentChannelOpen { open, grant }).await?;
            let reply = read_msg(&mut recv).await?.ok_or_else(|| anyhow!("no reply"))?;
            let _ = send.finish();
            Ok(reply)
        })
        .await
    }
}

/// A grant as the relay would sign it: `secs` from now, revision 1.
pub fn grant(session: &str, agent: &str, approver: &str, caps: Vec<Capability>, secs: i64) -> Grant {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    Grant {
        session: session.into(),
        agent: agent.into(),
        engineer: "alice".into(),
        capabilities: caps,
        not_before: now - 60_000,
        expires_at: now + secs * 1000,
        approver: approver.parse().expect("a consent source"),
        revision: 1,
        note: None,
    }
}
