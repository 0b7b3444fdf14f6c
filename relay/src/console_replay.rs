//! The relay's side of a recorded desktop's replay on the console's session page
//! ([`assist_console::auditlog::AuditState::desktop_replay`]).
//!
//! - Who: the session page's rule ([`crate::broker::Relay::session_for`]); a session the
//!   user may not see is "not found", as a missing one.
//! - What: the recording is verified first; a tampered one is refused with the verdict, a
//!   truncated one replays up to where it stops. The channel must be a desktop channel.
//!   The seek index is the seal's, or, unsealed, the one [`replay_source::scan`] builds.
//! - Audit: each replay opened is `recording.exported` (format `desktop-replay`, the
//!   channel, the verdict and the channel's bytes) before anything is sent.
//! - Then one task per replay streams the recorded messages unchanged, paced by
//!   [`replay::Pacer`], from the recording's file (one chunk at a time: nothing is loaded
//!   whole), and takes the page's controls. A seek opens the recording again and starts
//!   from the keyframe at or before the target ([`replay::start_offset`]): what lies
//!   between that keyframe and the target goes at once, after a `seek` event that tells
//!   the page to start its decoder afresh. After each control, once what it made due has
//!   gone, a `state` event says where the replay is, whether it plays and how fast. The
//!   task ends when the page goes.
//!
//! Markers: the recording's own (approval, end), the channel opening and closing, and the
//! grant revisions from the audit log after the first (each with what it granted; losing
//! `desktop.control` is "control revoked"), placed in recording time.

use crate::audit::AuditFilter;
use crate::console_state::{RelayConsole, from_refusal, internal, principal};
use crate::recording::desktop_index::DesktopIndex;
use crate::recording::replay::{self, Due, Pacer};
use crate::recording::replay_source::{self, ChannelReader, Marker, NotReplayable};
use crate::recording::{RecordingStore, Verdict};
use assist_console::{Account, ApiError, Down, ReplayControl, ReplayLink};
use assist_proto::ids::SessionId;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often a playing replay tells the page where it is.
const TICK: Duration = Duration::from_millis(250);
/// Messages queued for the page; a slow page holds the replay back.
const QUEUE: usize = 32;

/// What a replay needs once it is allowed.
struct Replay {
    store: Arc<dyn RecordingStore>,
    session: SessionId,
    channel: u32,
    index: DesktopIndex,
}

pub(crate) async fn open(
    console: &RelayConsole,
    user: &Account,
    id: &str,
    channel: u32,
) -> Result<ReplayLink, ApiError> {
    let who = principal(user)?;
    let info = console.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
    let not_recorded = || ApiError::NotFound(format!("no recording is stored for session {}", info.id));
    let store = console.relay.recordings.clone().ok_or_else(not_recorded)?;
    let key = console.relay.grant_public_key();
    let verdict = match crate::recording::verify_stored(store.as_ref(), &info.id, &key).await {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_recorded()),
        Err(e) => return Err(internal(e)),
    };
    let sealed = match &verdict {
        Verdict::Tampered { .. } => {
            return Err(ApiError::Conflict(format!("the recording cannot be replayed: {verdict}")));
        }
        Verdict::Valid { seal, .. } => seal.desktop.iter().find(|d| d.channel == channel).cloned(),
        Verdict::Truncated { .. } => None,
    };
    let source = store.open(&info.id).await.map_err(internal)?;
    let scanned = replay_source::scan(source, channel).await.map_err(internal)?.map_err(|e| match e {
        NotReplayable::NoChannel(_) | NotReplayable::NotDesktop(_) => {
            ApiError::NotFound(format!("the recording of {} has no desktop channel {channel}", info.id))
        }
        other => ApiError::Conflict(format!("the recording cannot be replayed: {other}")),
    })?;
    let index = sealed.unwrap_or_else(|| scanned.index.clone());

    let filter = AuditFilter { session: Some(info.id.clone()), ..Default::default() };
    let records = console.db.list_audit(&filter).await.map_err(internal)?;
    let started = scanned.header.started_at;
    // Audit times are wall clock, the recording's monotonic: a revision is placed within
    // the recording, at its start or end if the two clocks put it outside.
    let rec_us =
        |wall: i64| u64::try_from(wall - started).unwrap_or(0).saturating_mul(1000).min(scanned.end_us);
    let revisions = crate::console_review::grant_revisions(records);
    let mut markers = scanned.markers.clone();
    for pair in revisions.windows(2) {
        let (was, now) = (&pair[0], &pair[1]);
        let had = |g: &Vec<String>| g.iter().any(|c| c == "desktop.control");
        let label = if had(&was.granted) && !had(&now.granted) {
            format!("control revoked by {}", now.by)
        } else {
            format!("grant revision {} by {}", now.revision, now.by)
        };
        markers.push(Marker { at_us: rec_us(now.at), label });
    }
    markers.sort_by_key(|m| m.at_us);
    let grants: Vec<_> =
        revisions.iter().map(|g| json!({ "at_ms": rec_us(g.at) / 1000, "granted": g.granted })).collect();
    let first = json!({
        "type": "replay",
        "channel": channel,
        "duration_ms": scanned.end_us.div_ceil(1000),
        "verdict": verdict.label(),
        "markers": markers.iter().map(|m| json!({ "at_ms": m.at_us / 1000, "label": m.label })).collect::<Vec<_>>(),
        "grants": grants,
    });

    let detail = json!({
        "format": "desktop-replay",
        "channel": channel,
        "verdict": verdict.label(),
        "via": "console",
    });
    let mut event = crate::recording::cli::export_event(&info.agent_org, &info.id, detail, &[]);
    // A replay is a stream, not a file: it names the channel's recorded bytes instead.
    event.detail["bytes"] = index.bytes.into();
    if let Some(d) = event.detail.as_object_mut() {
        d.remove("sha256");
    }
    event.actor = user.user.clone();
    let now = assist_console::ConsoleState::now_ms(console);
    console.db.append_audit(&event, now).await.map_err(internal)?;

    let (up_tx, up_rx) = mpsc::channel(8);
    let (down_tx, down_rx) = mpsc::channel(QUEUE);
    let replay = Replay { store, session: info.id.clone(), channel, index };
    tokio::spawn(async move {
        if down_tx.send(Down::Event(first)).await.is_err() {
            return;
        }
        if let Err(e) = run(replay, scanned.end_us, up_rx, &down_tx).await {
            let _ = down_tx
                .send(Down::Event(json!({ "type": "error", "message": format!("the replay stopped: {e}") })))
                .await;
        }
    });
    Ok(ReplayLink { up: up_tx, down: down_rx })
}

/// Why the page stopped listening, or reading failed.
enum Stop {
    Gone,
    Read(std::io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Gone => write!(f, "the page went away"),
            Stop::Read(e) => write!(f, "the recording could not be read: {e}"),
        }
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Read(e)
    }
}

async fn say(down: &mpsc::Sender<Down>, v: serde_json::Value) -> Result<(), Stop> {
    down.send(Down::Event(v)).await.map_err(|_| Stop::Gone)
}

fn state(p: &Pacer, now: Instant) -> serde_json::Value {
    json!({ "type": "state", "playing": p.playing(), "speed": p.speed(), "ms": p.position(now.into_std()) / 1000 })
}

/// Streams the replay until the page goes.
async fn run(
    replay: Replay,
    end_us: u64,
    mut up: mpsc::Receiver<ReplayControl>,
    down: &mpsc::Sender<Down>,
) -> Result<(), Stop> {
    let mut pacer = Pacer::new(end_us);
    let mut reader = seek_to(&replay, &mut pacer, 0, Instant::now(), down).await?;
    let mut next = reader.next().await?;
    let mut ended = false;
    // A control was taken: say the new state once what it made due has gone.
    let mut announce = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        // Everything due goes now.
        while let Some(m) = &next {
            if pacer.due(m.rec_us, now.into_std()) != Due::Now {
                break;
            }
            let m = next.take().expect("some");
            down.send(Down::Output(m.bytes.into())).await.map_err(|_| Stop::Gone)?;
            next = reader.next().await?;
        }
        if pacer.at_end(now.into_std()) && next.is_none() && !ended {
            pacer.pause(now.into_std());
            ended = true;
            say(down, json!({ "type": "end", "ms": end_us.div_ceil(1000) })).await?;
        }
        if announce {
            announce = false;
            say(down, state(&pacer, Instant::now())).await?;
        }
        // What to wait for: the next message, or the end of the recording.
        let wake = match &next {
            Some(m) => pacer.due(m.rec_us, now.into_std()),
            None if !ended => pacer.due(end_us, now.into_std()),
            None => Due::Paused,
        };
        let at = match wake {
            Due::At(t) => Some(Instant::from_std(t)),
            Due::Now => Some(now),
            Due::Paused => None,
        };
        tokio::select! {
            control = up.recv() => {
                let Some(control) = control else { return Ok(()) };
                let now = Instant::now();
                match control {
                    ReplayControl::Play {} => {
                        if ended || pacer.at_end(now.into_std()) {
                            // From the start again.
                            ended = false;
                            reader = seek_to(&replay, &mut pacer, 0, now, down).await?;
                            next = reader.next().await?;
                        }
                        pacer.play(now.into_std());
                    }
                    ReplayControl::Pause {} => pacer.pause(now.into_std()),
                    ReplayControl::Speed { speed } => pacer.set_speed(speed, now.into_std()),
                    ReplayControl::Seek { ms } => {
                        ended = false;
                        reader = seek_to(&replay, &mut pacer, ms.saturating_mul(1000), now, down).await?;
                        next = reader.next().await?;
                    }
                }
                announce = true;
            }
            _ = async { tokio::time::sleep_until(at.expect("checked")).await }, if at.is_some() => {}
            _ = tick.tick(), if pacer.playing() => {
                let ms = pacer.position(Instant::now().into_std()) / 1000;
                say(down, json!({ "type": "position", "ms": ms })).await?;
            }
        }
    }
}

/// Moves the pacer to `to_us` and opens a reader at the keyframe at or before it, after
/// telling the page to start its picture afresh.
async fn seek_to(
    replay: &Replay,
    pacer: &mut Pacer,
    to_us: u64,
    now: Instant,
    down: &mpsc::Sender<Down>,
) -> Result<ChannelReader, Stop> {
    pacer.seek(to_us, now.into_std());
    let ms = pacer.position(now.into_std()) / 1000;
    say(down, json!({ "type": "seek", "ms": ms })).await?;
    let source = replay.store.open(&replay.session).await?;
    let start = replay::start_offset(&replay.index, pacer.position(now.into_std()));
    Ok(ChannelReader::new(source, replay.channel, start))
}
