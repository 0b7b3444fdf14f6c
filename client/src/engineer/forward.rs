//! `assist forward AGENT -L [BIND:]PORT:HOST:HOSTPORT [-L ...]`: local TCP ports whose
//! connections reach `HOST:HOSTPORT` from the agent's machine, like `ssh -L`.
//!
//! - Every listener is bound first (nobody is asked to approve what cannot listen here),
//!   then a session is requested for the `forward:HOST:HOSTPORT` capabilities (or
//!   `--session S` is used).
//! - Every accepted TCP connection is a channel of its own (one QUIC stream), so one slow
//!   connection never holds up another. A refused channel closes its TCP connection and
//!   says why on stderr; the listener goes on.
//! - A grant change that no longer covers a target stops its listener and drops its
//!   connections (the relay has reset their streams already); once none is left, or the
//!   session ends, the command leaves saying why. In a session it did not request
//!   (`--session`) it follows the session (`EngineerToRelay::Follow`) and so hears the
//!   same; a refused or broken forwarded connection is also the cue to look at the
//!   session again (`ListSessions`) and act the same way. SIGINT, SIGTERM and SIGHUP end
//!   it cleanly: a session it requested ends as "forwarding finished".
//!
//! It neither reads nor changes the forwarded bytes.

use super::EngineerError;
use super::config::ConfigDir;
use super::session::{self, SessionChoice, channel_on};
use assist_net::codes;
use assist_proto::caps::Capability;
use assist_proto::forward::Target;
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{ChannelKind, EngineerToRelay, RelayToEngineer, SessionInfo};
use assist_proto::session::SessionState;
use assist_proto::session::Work;
use quinn::{Connection, RecvStream, SendStream};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// One `-L` as given: where to listen, and what to reach from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub bind: IpAddr,
    pub port: u16,
    pub target: Target,
}

impl Spec {
    /// The capability that covers this forward.
    pub fn capability(&self) -> Capability {
        Capability::Forward { target: self.target.to_string() }
    }
}

fn parse_bind(bind: &str) -> Result<IpAddr, String> {
    match bind {
        "" | "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "*" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        b => b
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(b)
            .parse()
            .map_err(|_| format!("bind address {b:?} is not an IP address")),
    }
}

impl FromStr for Spec {
    type Err = String;

    /// `[BIND:]PORT:HOST:HOSTPORT`; HOST and BIND may be bracketed IPv6 literals.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("-L {s:?}: expected [BIND:]PORT:HOST:HOSTPORT, e.g. 5432:db:5432");
        let (rest, host_port) = s.rsplit_once(':').ok_or_else(bad)?;
        let (local, host) = if rest.ends_with(']') {
            let open = rest.rfind('[').ok_or_else(bad)?;
            (rest[..open].strip_suffix(':').ok_or_else(bad)?, &rest[open..])
        } else {
            rest.rsplit_once(':').ok_or_else(bad)?
        };
        let target = Target::parse(&format!("{host}:{host_port}")).map_err(|e| format!("-L {s:?}: {e}"))?;
        let (bind, port) = match local.rsplit_once(':') {
            Some((bind, port)) => (parse_bind(bind)?, port),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), local),
        };
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(Spec { bind, port, target })
    }
}

/// One status line; its parts may hold the relay's or the agent's text.
fn say(line: &str) {
    eprintln!("assist: {}", assist_proto::text::line(line));
}

/// A listener that runs: what it forwards, and the task that accepts (dropping its
/// connections when aborted).
struct Running {
    local: SocketAddr,
    spec: Spec,
    task: JoinHandle<()>,
}

impl Running {
    fn label(&self) -> String {
        format!("{} -> {}", self.local, self.spec.target)
    }
}

/// The signal that stops the command, as its number.
pub(crate) async fn stop_signal() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
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
}

/// Runs the forwards until stopped; returns the exit code.
pub async fn run(
    cfg: &ConfigDir,
    agent: &AgentName,
    specs: Vec<Spec>,
    choice: SessionChoice,
) -> Result<i32, EngineerError> {
    if specs.is_empty() {
        return Err(EngineerError::Refused("give at least one -L [BIND:]PORT:HOST:HOSTPORT".into()));
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut listeners = Vec::new();
    for spec in &specs {
        let listener = TcpListener::bind((spec.bind, spec.port)).await.map_err(|e| {
            EngineerError::Refused(format!("cannot listen on {}:{}: {e}", spec.bind, spec.port))
        })?;
        listeners.push(listener);
    }
    // Two listeners for one target ask for it once.
    let mut caps: Vec<Capability> = Vec::new();
    for cap in specs.iter().map(Spec::capability) {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    let mut live = tokio::select! {
        live = session::open(cfg, agent, choice, caps) => live?,
        number = &mut stop => {
            crate::conn::interrupt_all().await;
            say("interrupted");
            return Ok(128 + number);
        }
    };
    let granted = live.approved.as_ref().and_then(|s| s.granted.clone());
    let own = live.approved.is_some();
    live.follow().await?;
    let (recheck_tx, mut recheck_rx) = mpsc::channel::<()>(1);
    let mut asking = false;
    let mut listed = Vec::new();
    let mut running = Vec::new();
    for (listener, spec) in listeners.into_iter().zip(specs) {
        let local = listener.local_addr()?;
        let covered = granted.as_ref().is_none_or(|g| g.iter().any(|c| spec.capability().within(c)));
        if !covered {
            say(&format!(
                "not forwarding {local} -> {}: the approval left {} out",
                spec.target,
                spec.capability()
            ));
            continue;
        }
        let target = spec.target.to_string();
        let recheck = (!own).then(|| recheck_tx.clone());
        let task = tokio::spawn(accept(listener, live.conn.clone(), live.session.clone(), target, recheck));
        let r = Running { local, spec, task };
        eprintln!("forwarding {} via {agent}", assist_proto::text::line(&r.label()));
        running.push(r);
    }
    let mut events = live.events.take();
    let outcome = loop {
        if running.is_empty() {
            break Err("nothing granted is left to forward".to_owned());
        }
        let event = async {
            match events.as_mut() {
                Some(ev) => ev.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break Ok(()),
            Some(()) = recheck_rx.recv(), if !asking => {
                asking = live.send(&EngineerToRelay::ListSessions).await.is_ok();
            }
            ev = event => match ev {
                Some(Ok(RelayToEngineer::Sessions { sessions: part, more })) if asking => {
                    // A long list comes in parts (`proto::parts`): the whole list first.
                    listed.extend(part);
                    if more {
                        continue;
                    }
                    let sessions = std::mem::take(&mut listed);
                    asking = false;
                    let info = sessions.iter().find(|s| s.id == live.session);
                    let granted = match granted_now(&live.session, info) {
                        Ok(granted) => granted,
                        Err(why) => {
                            stop_all(&mut running);
                            live.close().await;
                            return Err(EngineerError::Refused(why));
                        }
                    };
                    running.retain(|r| {
                        let kept = granted.iter().any(|c| r.spec.capability().within(c));
                        if !kept {
                            r.task.abort();
                            say(&format!("stopped forwarding {}: the grant does not cover it", r.label()));
                        }
                        kept
                    });
                    if running.is_empty() {
                        break Err(format!("forwarding stopped: session {} grants none of it now", live.session));
                    }
                }
                Some(Ok(RelayToEngineer::SessionEnded { reason })) => {
                    stop_all(&mut running);
                    say(&format!("session {} ended: {reason}", live.session));
                    live.close().await;
                    return Ok(reason.exit_code());
                }
                Some(Ok(RelayToEngineer::GrantChanged { grant, change, in_force, .. })) => {
                    say(&change);
                    running.retain(|r| {
                        let kept = in_force && grant.capabilities.iter().any(|c| r.spec.capability().within(c));
                        if !kept {
                            r.task.abort();
                            say(&format!("stopped forwarding {}: the grant no longer covers it", r.label()));
                        }
                        kept
                    });
                    if running.is_empty() {
                        break Err(format!("forwarding stopped: {change}"));
                    }
                }
                Some(Ok(RelayToEngineer::Error { message, .. })) => say(&message),
                Some(Ok(_)) => {}
                Some(Err(message)) => {
                    stop_all(&mut running);
                    return Err(EngineerError::Refused(message));
                }
                None => {
                    stop_all(&mut running);
                    return Err(EngineerError::Refused("relay connection lost".into()));
                }
            }
        }
    };
    stop_all(&mut running);
    live.events = events;
    live.finish(Work::Forward, outcome.is_ok()).await;
    match outcome {
        Ok(()) => {
            say("forwarding finished");
            Ok(0)
        }
        Err(why) => Err(EngineerError::Refused(why)),
    }
}

/// What a session this command did not request grants now, or why it is over.
fn granted_now(id: &SessionId, info: Option<&SessionInfo>) -> Result<Vec<Capability>, String> {
    let Some(info) = info else { return Err(format!("session {id} is not live")) };
    if info.state != SessionState::Active {
        let why = info.end_reason.clone().unwrap_or_else(|| info.state.as_str().to_owned());
        return Err(format!("session {id} ended: {why}"));
    }
    let in_force = info.grant_expires_at.is_some_and(|at| at > crate::clock::now_ms());
    Ok(if in_force { info.granted.clone().unwrap_or_default() } else { Vec::new() })
}

fn stop_all(running: &mut Vec<Running>) {
    for r in running.drain(..) {
        r.task.abort();
    }
}

/// Accepts connections; each becomes a channel. Aborting this task drops them all.
/// `recheck` is told when a connection is refused or broken (see the module docs).
async fn accept(
    listener: TcpListener,
    conn: Connection,
    session: SessionId,
    target: String,
    recheck: Option<mpsc::Sender<()>>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let one = forward_one(conn.clone(), session.clone(), target.clone(), tcp, peer);
                    let recheck = recheck.clone();
                    conns.spawn(async move {
                        if !one.await && let Some(recheck) = recheck {
                            let _ = recheck.try_send(());
                        }
                    });
                }
                Err(e) => say(&format!("accepting on {:?}: {e}", listener.local_addr().ok())),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One forwarded connection: its channel, then bytes both ways until both ends finish or
/// either fails (then both are dropped at once). Returns whether it went well.
async fn forward_one(
    conn: Connection,
    session: SessionId,
    target: String,
    tcp: TcpStream,
    peer: SocketAddr,
) -> bool {
    let (send, recv) =
        match channel_on(&conn, &session, ChannelKind::Forward { target: target.clone() }).await {
            Ok(streams) => streams,
            Err(e) => {
                say(&format!("connection from {peer} to {target}: {e}"));
                return false;
            }
        };
    splice(tcp, send, recv).await
}

async fn splice(tcp: TcpStream, mut send: SendStream, mut recv: RecvStream) -> bool {
    let (read, mut write) = tcp.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let up = async {
        tokio::io::copy_buf(&mut read, &mut send).await?;
        send.finish().map_err(std::io::Error::other)
    };
    let down = async {
        // Chunks as quinn holds them, without copying them into a buffer of ours first.
        while let Some(chunk) = recv.read_chunk(64 * 1024, true).await.map_err(std::io::Error::other)? {
            write.write_all(&chunk.bytes).await?;
        }
        write.shutdown().await
    };
    if tokio::try_join!(up, down).is_err() {
        let _ = send.reset(codes::SESSION_ENDED);
        let _ = recv.stop(codes::SESSION_ENDED);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, bind: &str, port: u16, target: &str) {
        let spec: Spec = text.parse().unwrap();
        assert_eq!(spec.bind, bind.parse::<IpAddr>().unwrap(), "{text}");
        assert_eq!(spec.port, port, "{text}");
        assert_eq!(spec.target.to_string(), target, "{text}");
    }

    #[test]
    fn forwards_parse_like_ssh() {
        check("5432:db:5432", "127.0.0.1", 5432, "db:5432");
        check("0:127.0.0.1:80", "127.0.0.1", 0, "127.0.0.1:80");
        check("0.0.0.0:8080:erp.internal:443", "0.0.0.0", 8080, "erp.internal:443");
        check("[::1]:8080:[fd00::5]:443", "::1", 8080, "[fd00::5]:443");
        check("8080:[fd00::5]:443", "127.0.0.1", 8080, "[fd00::5]:443");
        check("localhost:1:db:2", "127.0.0.1", 1, "db:2");
        for bad in ["5432", "5432:db", "x:db:5432", "5432:db:0", "nonsense:1:db:2", "1:[::1:2", "99999:db:1"]
        {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }
}
