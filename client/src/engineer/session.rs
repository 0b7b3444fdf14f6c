//! A session to work in, for commands that open channels (`assist cp`, `ls`, `exec`,
//! `logs`, `forward`): a new one requested for exactly the capability the command needs (and waited
//! for, like `assist shell`), or a live session of the same engineer (`--session S`),
//! opened from any of their connections.
//!
//! The connection's control stream stays open while the command runs: a session this
//! command requested ends when the command's connection goes. With `--session`, the
//! command follows the session first (`EngineerToRelay::Follow`); in a cluster, a relay
//! that does not hold it names the one that does, and the command reconnects there once
//! (`Authed::call_at_holder`) before it opens any channel.

use super::{EngineerError, connect};
use crate::clock::{duration, now_ms};
use crate::term;
use assist_net::read_msg;
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{
    ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, RelayToEngineer, SessionInfo,
};
use assist_proto::session::Work;
use quinn::{Connection, RecvStream, SendStream};
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;

/// A message from the relay, or why none will come.
pub(crate) type Event = Result<RelayToEngineer, String>;

/// Which session a command works in.
#[derive(Clone, Debug)]
pub enum SessionChoice {
    /// Request a new session for the command's capability.
    New { ticket: String, priority: Priority, reason: String, duration_secs: Option<u64> },
    /// Use this live session of yours.
    Existing(SessionId),
}

/// A session ready for channels.
pub struct Live {
    pub conn: Connection,
    pub session: SessionId,
    /// What the relay tells this connection: the session's events if this command
    /// requested it, else only answers and what concerns its own channels.
    pub events: Option<mpsc::Receiver<Event>>,
    /// The session as approved, when this command requested it (what was granted).
    pub approved: Option<SessionInfo>,
    control: SendStream,
    rc: crate::conn::RelayConn,
    /// Whether this command requested the session (and so ends it when it leaves).
    own: bool,
    /// Whether this connection already follows the session (`--session`, asked at open).
    following: bool,
}

impl Live {
    /// Opens a channel and reads the reply; a refusal becomes an error with its reason.
    pub async fn channel(&self, kind: ChannelKind) -> Result<(SendStream, RecvStream), EngineerError> {
        channel_on(&self.conn, &self.session, kind).await
    }

    /// Sends a request on the command's control stream; its answer comes as an event.
    pub async fn send(&mut self, msg: &EngineerToRelay) -> Result<(), EngineerError> {
        assist_net::write_msg(&mut self.control, msg)
            .await
            .map_err(|e| EngineerError::Refused(format!("lost the connection to the relay: {e}")))
    }

    /// For a session this command did not request (`--session`): asks the relay to tell
    /// this connection of the session's grant changes and end, as it tells the requesting
    /// command. The answer comes as an event (`Done`, or `Error` with why not).
    pub async fn follow(&mut self) -> Result<(), EngineerError> {
        if self.own || self.following {
            return Ok(());
        }
        let msg = EngineerToRelay::Follow { session: self.session.clone() };
        self.send(&msg).await
    }

    /// Ends the command's connection; a session it requested ends saying what the command
    /// did (`work`, done if `ok`). A session given with `--session` goes on.
    pub async fn finish(mut self, work: Work, ok: bool) {
        if self.own
            && let Some(events) = self.events.as_mut()
        {
            let finish = EngineerToRelay::Finish { session: self.session.clone(), work, ok };
            if assist_net::write_msg(&mut self.control, &finish).await.is_ok() {
                // The answer says the end is stored; without it the close ends the session
                // anyway, as a disconnection.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(ev)) = events.recv().await {
                        if matches!(ev, RelayToEngineer::Done { .. } | RelayToEngineer::Error { .. }) {
                            return;
                        }
                    }
                })
                .await;
            }
        }
        self.close().await;
    }

    /// Ends the command's connection (and so a session it requested).
    pub async fn close(mut self) {
        let _ = self.control.finish();
        self.rc.close().await;
    }
}

/// What can open channels of a session: a [`Live`] session, or a [`Channels`] handle
/// that tasks of their own share (`assist ssh-proxy`'s SFTP and forwards).
pub trait OpenChannel {
    /// Opens a channel and reads the reply; a refusal becomes an error with its reason.
    fn channel(
        &self,
        kind: ChannelKind,
    ) -> impl std::future::Future<Output = Result<(SendStream, RecvStream), EngineerError>> + Send;
}

impl OpenChannel for Live {
    fn channel(
        &self,
        kind: ChannelKind,
    ) -> impl std::future::Future<Output = Result<(SendStream, RecvStream), EngineerError>> + Send {
        channel_on(&self.conn, &self.session, kind)
    }
}

/// A session's channels on a connection, cheap to clone.
#[derive(Clone, Debug)]
pub struct Channels {
    pub conn: Connection,
    pub session: SessionId,
}

impl OpenChannel for Channels {
    fn channel(
        &self,
        kind: ChannelKind,
    ) -> impl std::future::Future<Output = Result<(SendStream, RecvStream), EngineerError>> + Send {
        channel_on(&self.conn, &self.session, kind)
    }
}

impl Live {
    /// A handle that opens channels of this session on this connection.
    pub fn channels(&self) -> Channels {
        Channels { conn: self.conn.clone(), session: self.session.clone() }
    }
}

/// Opens a channel of `session` on `conn` and reads the reply; a refusal becomes an error
/// with its reason. For commands whose channels outlive a borrow of [`Live`] (each
/// forwarded connection is a task of its own).
pub async fn channel_on(
    conn: &Connection,
    session: &SessionId,
    kind: ChannelKind,
) -> Result<(SendStream, RecvStream), EngineerError> {
    open_on(conn, session, kind, false).await
}

impl Channels {
    /// Opens a shell channel whose exit and stderr come to this connection, for the
    /// stream id returned (`RelayToEngineer::ChannelExited`, `ChannelKind::StderrOf`),
    /// instead of ending the session.
    pub async fn reporting(&self, kind: ChannelKind) -> Result<(u64, SendStream, RecvStream), EngineerError> {
        let (send, recv) = open_on(&self.conn, &self.session, kind, true).await?;
        Ok((u64::from(send.id()), send, recv))
    }
}

async fn open_on(
    conn: &Connection,
    session: &SessionId,
    kind: ChannelKind,
    report_exit: bool,
) -> Result<(SendStream, RecvStream), EngineerError> {
    let what = kind.name();
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| EngineerError::Refused(format!("cannot open a {what} channel: {e}")))?;
    let open = ChannelOpen { session: session.clone(), report_exit, channel: kind };
    assist_net::write_msg(&mut send, &open).await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    match read_msg::<ChannelReply, _>(&mut recv).await {
        Ok(Some(ChannelReply::Accepted)) => Ok((send, recv)),
        Ok(Some(ChannelReply::Refused { reason, .. })) => {
            Err(EngineerError::Refused(format!("refused: {reason}")))
        }
        Ok(None) | Err(_) => Err(EngineerError::Refused(format!("the relay closed the {what} channel"))),
    }
}

/// One status line; its parts may hold the relay's or the other party's text.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{}", assist_proto::text::line(msg));
}

/// Connects and gets the session: requested for `caps` and approved, or the given one.
pub async fn open(
    cfg: &super::config::ConfigDir,
    agent: &AgentName,
    choice: SessionChoice,
    caps: Vec<Capability>,
) -> Result<Live, EngineerError> {
    if let SessionChoice::New { ticket, reason, .. } = &choice {
        assist_proto::text::check_ticket(ticket)?;
        assist_proto::text::check_reason("reason", reason)?;
    }
    // A path over the file system's limits is refused here, before anything is sent: one
    // too long for a frame would otherwise only get "frame exceeds the limit". Everything
    // else about a path is the relay's to refuse (and to audit).
    for cap in &caps {
        if let Capability::FilesRead { roots } | Capability::FilesWrite { roots } = cap {
            use assist_proto::caps::{PATH_MAX, check_path_length};
            roots
                .iter()
                .try_for_each(|r| check_path_length("path", r, PATH_MAX, "PATH_MAX"))
                .map_err(|e| EngineerError::Refused(e.to_string()))?;
        }
    }
    let mut authed = connect(cfg).await?;
    let mut following = false;
    if let SessionChoice::Existing(session) = &choice {
        // Followed from the start, on the relay that holds the session: in a cluster that
        // may be another relay than the login's, and every channel of the command goes
        // there. A refusal here (not live, not yours) is left for the channel to meet, as
        // that refusal is the one audited.
        let follow = EngineerToRelay::Follow { session: session.clone() };
        let (there, reply) = authed.call_at_holder(session, &follow).await?;
        authed = there;
        following = matches!(reply, RelayToEngineer::Done { .. });
    }
    let conn = authed.rc.conn.clone();
    let rc = authed.rc;
    let mut control = authed.control.send;
    let (ticket, priority, reason, duration_secs) = match choice {
        SessionChoice::Existing(session) => {
            let events = Some(spawn_events(authed.control.recv));
            return Ok(Live { conn, session, events, approved: None, control, rc, own: false, following });
        }
        SessionChoice::New { ticket, priority, reason, duration_secs } => {
            (ticket, priority, reason, duration_secs)
        }
    };
    let request = EngineerToRelay::RequestSession {
        agent: agent.clone(),
        ticket,
        priority,
        reason,
        capabilities: caps,
        duration_secs,
    };
    assist_net::write_msg(&mut control, &request)
        .await
        .map_err(|e| EngineerError::Refused(format!("lost the connection to the relay: {e}")))?;
    let mut events = spawn_events(authed.control.recv);
    let approved = wait_for_consent(&mut events).await?;
    let session = approved.id.clone();
    Ok(Live {
        conn,
        session,
        events: Some(events),
        approved: Some(approved),
        control,
        rc,
        own: true,
        following: false,
    })
}

/// Reads the control stream into a channel of events.
pub(crate) fn spawn_events(mut control_recv: RecvStream) -> mpsc::Receiver<Event> {
    let (events_tx, events) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        loop {
            match read_msg::<RelayToEngineer, _>(&mut control_recv).await {
                Ok(Some(m)) => {
                    if events_tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = events_tx.send(Err("the relay closed the session stream".into())).await;
                    return;
                }
                Err(e) => {
                    let _ = events_tx.send(Err(format!("relay connection lost ({e})"))).await;
                    return;
                }
            }
        }
    });
    events
}

/// Shows the wait and returns the session once approved.
pub(crate) async fn wait_for_consent(
    events: &mut mpsc::Receiver<Event>,
) -> Result<SessionInfo, EngineerError> {
    let (session, waiting_for) = match events.recv().await {
        Some(Ok(RelayToEngineer::SessionRequested { session, waiting_for })) => (session, waiting_for),
        Some(Ok(RelayToEngineer::Error { code, message, .. })) => {
            return Err(EngineerError::Relay { code, message });
        }
        Some(Ok(other)) => return Err(EngineerError::Unexpected(format!("{other:?}"))),
        Some(Err(m)) => return Err(EngineerError::Refused(m)),
        None => return Err(EngineerError::Refused("relay connection lost".into())),
    };
    let live = term::stderr_is_tty();
    say(&format!(
        "assist: session {} on {} (ticket {}, {}) requested; waiting for {} (denied automatically in {})",
        session.id,
        session.agent,
        session.ticket,
        session.priority,
        waiting_for,
        duration(session.consent_deadline - now_ms())
    ));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let clear = |live: bool| {
        if live {
            eprint!("\r\x1b[2K");
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick(), if live => {
                eprint!(
                    "\r\x1b[2Kwaiting {} — {} left",
                    duration(now_ms() - session.requested_at),
                    duration(session.consent_deadline - now_ms())
                );
            }
            ev = events.recv() => {
                clear(live);
                return match ev {
                    Some(Ok(RelayToEngineer::SessionApproved { session: s })) => {
                        say(&super::grant::approved_line(&s));
                        Ok(s)
                    }
                    Some(Ok(RelayToEngineer::SessionDenied { by, reason })) => Err(EngineerError::Refused(format!(
                        "session {} denied by {}: {reason}",
                        session.id,
                        by.as_deref().unwrap_or("the relay")
                    ))),
                    Some(Ok(RelayToEngineer::SessionExpired { waited_ms })) => Err(EngineerError::Refused(format!(
                        "session {} expired: no answer within {}; the request is denied",
                        session.id,
                        duration(waited_ms)
                    ))),
                    Some(Ok(RelayToEngineer::SessionEnded { reason })) => {
                        Err(EngineerError::Refused(format!("session {} ended before it started: {reason}", session.id)))
                    }
                    Some(Ok(RelayToEngineer::Error { code, message, .. })) => Err(EngineerError::Relay { code, message }),
                    Some(Ok(other)) => Err(EngineerError::Unexpected(format!("{other:?}"))),
                    Some(Err(m)) => Err(EngineerError::Refused(m)),
                    None => Err(EngineerError::Refused("relay connection lost".into())),
                };
            }
        }
    }
}
