//! Serving a forward channel: one TCP connection from this machine to `HOST:PORT`, its
//! bytes carried on the channel's stream both ways.
//!
//! - [`super::channel`] has checked the grant (signature, this agent and session, in
//!   force, the agent's own record) and that it covers `forward:HOST:PORT` exactly.
//! - The agent resolves HOST itself and reaches only addresses the grant allows: a
//!   link-local or metadata address (169.254.0.0/16, fe80::/10), or one that is no single
//!   host's, only when the grant names that literal IP; a name that resolves to one of
//!   those is refused saying where it resolved.
//! - `Accepted` is answered only once the TCP connection is up; otherwise `Refused` with
//!   the reason ("connection refused by HOST:PORT", ...).
//! - Half-closes pass through (the end of one direction finishes the other side's
//!   writing); a revision or expiry that no longer covers the target, or the session's
//!   end, resets the stream and drops the connection at once.
//!
//! It does not look at the bytes: they may be a protocol's ciphertext.

use super::process::Control;
use super::shared::{AgentState, Digest, countersign, refuse};
use assist_net::{codes, write_msg};
use assist_proto::caps::Capability;
use assist_proto::forward::{Host, Target, special};
use assist_proto::ids::SessionId;
use assist_proto::msg::ChannelReply;
use quinn::{RecvStream, SendStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

/// How long resolving and connecting may take in all: the relay waits 10 s for the
/// channel's answer, and should hear why rather than nothing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// The addresses the target may be reached at, or why none.
async fn addresses(target: &Target) -> Result<Vec<SocketAddr>, String> {
    let resolved: Vec<SocketAddr> = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .collect(),
    };
    screen(target, resolved)
}

/// Keeps the resolved addresses the grant allows: a special one (link-local, metadata,
/// no single host's) only if the target names that very IP.
fn screen(target: &Target, resolved: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for addr in resolved {
        match special(addr.ip()) {
            Some(what) if !target.names_ip(addr.ip()) => refused.push(format!("{} ({what})", addr.ip())),
            _ => allowed.push(addr),
        }
    }
    if allowed.is_empty() {
        return Err(match (&target.host, refused.is_empty()) {
            (Host::Name(name), false) => format!(
                "{name} resolves to {}, which the grant does not name; only a grant for that literal address reaches it",
                refused.join(", ")
            ),
            (_, false) => format!("{} is not reachable through a forward", refused.join(", ")),
            (_, true) => format!("{} resolves to no address", target.host),
        });
    }
    Ok(allowed)
}

/// Connects to the first address that answers.
async fn connect(target: &Target, addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = format!("cannot connect to {target}");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!("connection refused by {target}");
            }
            Err(e) => last = format!("cannot connect to {target} ({addr}): {e}"),
        }
    }
    Err(last)
}

/// Copies `from` into `to`, hashing what passes; finishes `to` at `from`'s end. Returns
/// whether it ended cleanly.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    digest: &mut Digest,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => return to.shutdown().await.is_ok(),
            Ok(n) => {
                digest.update(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

pub(crate) async fn serve(
    state: Arc<AgentState>,
    session: SessionId,
    target: String,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let parsed = match Target::parse(&target) {
        Ok(t) => t,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    let reached = async {
        match addresses(&parsed).await {
            Ok(addrs) => connect(&parsed, &addrs).await,
            Err(reason) => Err(reason),
        }
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, reached).await.unwrap_or_else(|_| {
        Err(format!("cannot connect to {parsed}: no answer within {} s", CONNECT_TIMEOUT.as_secs()))
    });
    let tcp = match tcp {
        Ok(tcp) => tcp,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    let peer = tcp.peer_addr().ok();
    let stream = u64::from(send.id());
    // Stopped like any channel when a revision or expiry no longer covers the target.
    let (control, mut kill) = Control::for_task();
    if !state.grants.add_running(&session, stream, Capability::Forward { target: target.clone() }, control) {
        let _ = send.reset(codes::SESSION_ENDED);
        return;
    }
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err() {
        state.grants.remove_running(&session, stream);
        return;
    }
    info!(%session, target = %assist_proto::text::line(&target), ?peer, "forward connected");
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let mut up = Digest::new(stream, "in");
    let mut down = Digest::new(stream, "out");
    // Both directions to their end, or either failing ends both: a connection whose
    // engineer side was reset must not hold the target's side open.
    let both = async {
        let to_target = pump(&mut recv, &mut tcp_write, &mut up);
        let from_target = pump(&mut tcp_read, &mut send, &mut down);
        tokio::pin!(to_target, from_target);
        let (mut to_done, mut from_done) = (false, false);
        while !(to_done && from_done) {
            let ok = tokio::select! {
                ok = &mut to_target, if !to_done => { to_done = true; ok }
                ok = &mut from_target, if !from_done => { from_done = true; ok }
            };
            if !ok {
                return false;
            }
        }
        true
    };
    let ended = tokio::select! {
        ended = both => ended,
        _ = kill.wait_for(|k| *k) => false,
    };
    if ended {
        // Until the relay has all of it: the countersignature comes first, then the end.
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    } else {
        let _ = send.reset(codes::SESSION_ENDED);
        let _ = recv.stop(codes::SESSION_ENDED);
        warn!(%session, "forward stopped");
    }
    state.grants.remove_running(&session, stream);
    countersign(&state, &session, vec![up.finish(), down.finish()]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_name_resolving_to_a_metadata_or_link_local_address_is_refused() {
        let target = Target::parse("erp-db.acme.internal:80").unwrap();
        let err = screen(&target, addrs(&["169.254.169.254:80"])).unwrap_err();
        assert!(err.contains("erp-db.acme.internal resolves to 169.254.169.254"), "{err}");
        assert!(err.contains("the grant does not name"), "{err}");
        let err = screen(&target, addrs(&["[fe80::1]:80", "[::ffff:169.254.1.1]:80"])).unwrap_err();
        assert!(err.contains("fe80::1") && err.contains("link-local"), "{err}");
        // Only the ordinary addresses of a mixed answer are tried.
        assert_eq!(
            screen(&target, addrs(&["169.254.169.254:80", "10.0.0.5:80"])).unwrap(),
            addrs(&["10.0.0.5:80"])
        );
        assert!(screen(&target, vec![]).unwrap_err().contains("resolves to no address"));
    }

    #[test]
    fn a_grant_naming_the_literal_address_reaches_it() {
        let target = Target::parse("169.254.169.254:80").unwrap();
        assert_eq!(screen(&target, addrs(&["169.254.169.254:80"])).unwrap(), addrs(&["169.254.169.254:80"]));
        let target = Target::parse("[fe80::1]:22").unwrap();
        assert!(screen(&target, addrs(&["[fe80::1]:22"])).is_ok());
        let target = Target::parse("127.0.0.1:5432").unwrap();
        assert!(screen(&target, addrs(&["127.0.0.1:5432"])).is_ok());
    }

    #[tokio::test]
    async fn names_are_resolved_by_the_agent() {
        let target = Target::parse("localhost:5432").unwrap();
        let found = addresses(&target).await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 5432), "{found:?}");
    }
}
