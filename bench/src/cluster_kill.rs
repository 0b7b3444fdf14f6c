//! A relay killed under N real agents (default 1,000 `assist-agent run` processes,
//! [`crate::fleet`]), in a 3-relay cluster and, as the baseline, alone on SQLite.
//!
//! - Cluster: the agents enroll through relay 1 and connect to all three. Relay 1 gets
//!   SIGKILL. From then until every agent is back on relay 1, relays 2 and 3's logs say
//!   whether any agent left them (`agent disconnected`, and its next `agent connected`):
//!   (a) the fewest agents connected to a surviving relay and how long any was missing.
//!   (`assist agents` cannot list 1,000 agents: its answer exceeds one 64 KiB frame.) Relay 1
//!   starts again on its address once the cluster has declared it lost (a relay's name
//!   is refused while its heartbeat is fresh, i.e. for about 10 s after a kill) and at
//!   least `--cluster-down` seconds after the kill. (b) Each agent's reconnection is the
//!   first `agent connected` line for it in relay 1's new log, timed from that log's own
//!   `listening` line: p50, p95, max, and the most in any one second.
//! - Alone (SQLite): the same agents' count on one relay, killed and started again after
//!   the cluster's downtime (`--quick`: after `--cluster-down`); every agent is unreachable
//!   from the kill until it is back.
//!
//! One round: starting 1,000 processes twice is the slow part. Nothing here is asserted.

use crate::Ctx;
use crate::cluster::{CLUSTER, SQLITE};
use crate::cluster_world::{start_relay, start_relays};
use crate::fleet::{self, Fleet, read_log};
use crate::pg::Postgres;
use crate::report::{Better, Figure, Series, percentile};
use crate::world::{Bins, Relay};
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const ORG: &str = "fleet";
/// Agents started at once when the fleet starts.
const WAVE: usize = 100;
/// Reconnection is over when nobody new has connected for this long (an agent refused
/// for good has quit and never will).
const QUIET: Duration = Duration::from_secs(30);

/// What one scenario measured.
struct Outcome {
    /// Seconds from the restarted relay's `listening` line to each agent's connection.
    back_s: Vec<f64>,
    /// Longest time any agent was unreachable (cluster: from a surviving relay).
    unreachable_s: f64,
    /// Fewest agents online on a relay that could be asked during the outage.
    online_min: usize,
    /// Kill to the restarted relay's `listening` line.
    down_s: f64,
    /// Agent processes that had ended by the end (refused for good).
    quit: usize,
    notes: Vec<String>,
}

pub fn run(ctx: &Ctx, pg: &Postgres) -> Result<Vec<Figure>> {
    let n = ctx.settings.cluster_agents;
    let dir = ctx.dir.join("cluster-kill");
    let cluster = in_cluster(ctx, pg, n, &dir.join("cluster")).context("cluster")?;
    // The same outage for both, except in a smoke run, which need not compare them.
    let down = if ctx.settings.quick { ctx.settings.cluster_down_s } else { cluster.down_s };
    let alone = alone(ctx, n, &dir.join("sqlite"), down).context("one relay")?;

    let one = |id: &str, title: &str, unit: &str, better: Better, f: &dyn Fn(&Outcome) -> f64| {
        let mut fig = Figure::new(id, title, unit, better, CLUSTER);
        fig.push(Series::new(CLUSTER, vec![f(&cluster)]));
        fig.push(Series::new(SQLITE, vec![f(&alone)]));
        fig
    };
    let pct = |p: f64| move |o: &Outcome| percentile(&o.back_s, p).unwrap_or(f64::NAN);
    let mut figures = vec![
        one(
            "cluster_kill_unreachable_s",
            &format!("relay killed under {n} agents: longest time an agent was unreachable"),
            "s",
            Better::Lower,
            &|o| o.unreachable_s,
        ),
        one(
            "cluster_kill_online_min",
            &format!("relay killed under {n} agents: fewest agents online on a live relay meanwhile"),
            "agents",
            Better::Higher,
            &|o| o.online_min as f64,
        ),
        one(
            "cluster_reconnect_p50_s",
            "killed relay restarted: agents back on it, p50",
            "s",
            Better::Lower,
            &pct(50.0),
        ),
        one(
            "cluster_reconnect_p95_s",
            "killed relay restarted: agents back on it, p95",
            "s",
            Better::Lower,
            &pct(95.0),
        ),
        one(
            "cluster_reconnect_max_s",
            "killed relay restarted: agents back on it, all (max)",
            "s",
            Better::Lower,
            &pct(100.0),
        ),
        one(
            "cluster_reconnect_back",
            "killed relay restarted: agents back on it",
            "agents",
            Better::Higher,
            &|o| o.back_s.len() as f64,
        ),
        one(
            "cluster_reconnect_peak_per_s",
            "killed relay restarted: most reconnections in any one second",
            "agents/s",
            Better::Lower,
            &|o| peak_per_second(&o.back_s) as f64,
        ),
    ];
    let head = &mut figures[0];
    head.note(format!(
        "{n} real `assist-agent run` processes (default backoff: 0.5 s doubling to 60 s, x0.5-1.5 jitter, \
         per relay); the relay was down {:.1} s (cluster: until declared lost, ~10 s after its last \
         heartbeat, before its name may start again), the lone relay as long (a smoke run: --cluster-down)",
        cluster.down_s
    ));
    head.note(
        "cluster: relays 2 and 3's logs of agents connecting and disconnecting, from the kill until every \
         agent was back on relay 1; alone: every agent is unreachable from the kill until it is back",
    );
    head.note(format!(
        "agent processes that had quit by the end (a relay refused them for good): cluster {}, alone {}",
        cluster.quit, alone.quit
    ));
    for note in cluster.notes.iter().chain(&alone.notes) {
        head.note(note.clone());
    }
    figures[2].note(
        "from the restarted relay's `listening` log line to each agent's `agent connected` line (the relay's \
         clock); an agent notices a restart at its next packet to the old connection (keep-alive every \
         10 s, retransmissions) answered by a stateless reset, then waits its jittered backoff",
    );
    Ok(figures.into_iter().map(Figure::finish).collect())
}

/// Organisations and the observing engineer, on the first relay.
fn people(bins: &Bins, relay: &Relay) -> Result<()> {
    relay.admin(bins, &["org", "add", "vendor"], "")?;
    relay.admin(bins, &["org", "add", ORG, "--supported-by", "vendor"], "")?;
    let args = ["user", "add", "alice", "--org", "vendor", "--role", "engineer", "--password-stdin"];
    relay.admin(bins, &args, "bench-password-123\n")?;
    Ok(())
}

/// Enrolls the agents through `relay` and starts them; returns once every relay whose
/// log is in `logs` has had all of them connect.
fn fleet(ctx: &Ctx, relay: &Relay, prefix: &str, n: usize, dir: &Path, logs: &[PathBuf]) -> Result<Fleet> {
    let started = Instant::now();
    let dirs = fleet::enroll(ctx, relay, ORG, prefix, n, &dir.join("agents"))?;
    eprintln!("assist-bench: cluster kill: {n} agents enrolled in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let limit = Duration::from_secs(120 + n as u64 / 5);
    // In waves, each waited for on the first relay: a thousand agents started in the same
    // second are a storm the database cannot take (see the notes); what is measured is
    // their return to a restarted relay, which their backoff spreads.
    let mut fleet = Fleet::start(&ctx.bins, &[])?;
    for (i, wave) in dirs.chunks(WAVE).enumerate() {
        fleet.add(&ctx.bins, wave)?;
        wait_all(&logs[0], (i * WAVE + wave.len()).min(n), started + limit)?;
    }
    for log in logs {
        wait_all(log, n, started + limit)?;
    }
    eprintln!(
        "assist-bench: cluster kill: {n} agents connected to {} relay(s) in {:.1} s",
        logs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(fleet)
}

/// Waits until `n` agents have connected in the relay log `log`; the log read last.
fn wait_all(log: &Path, n: usize, deadline: Instant) -> Result<fleet::RelayLog> {
    loop {
        let read = read_log(log)?;
        if read.connected.len() >= n {
            return Ok(read);
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} agents connected ({})", read.connected.len(), log.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn in_cluster(ctx: &Ctx, pg: &Postgres, n: usize, dir: &Path) -> Result<Outcome> {
    let bins = &ctx.bins;
    let db = "kill_cluster";
    let database = pg.create_database(db)?;
    let mut relays = start_relays(bins, dir, Some(&database), 3)?;
    people(bins, &relays[0])?;
    let logs: Vec<PathBuf> = relays.iter().map(|r| r.log.clone()).collect();
    let mut fleet = fleet(ctx, &relays[0], "c", n, dir, &logs)?;
    let (rss, anon) = fleet.rss_of_one()?;
    let survivors_before: Vec<usize> =
        logs[1..].iter().map(|l| read_log(l).map(|r| r.disconnected)).collect::<Result<_>>()?;
    let r1 = relays.remove(0);
    let address = r1.addr.clone();
    let killed = SystemTime::now();
    drop(r1); // SIGKILL, as Proc's drop does
    let min_down = Duration::from_secs_f64(ctx.settings.cluster_down_s);
    let lost_sql = "SELECT (lost_at IS NOT NULL)::text FROM relays WHERE name = 'r1'";
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let waited = killed.elapsed().unwrap_or_default();
        if waited >= min_down && pg.psql(db, lost_sql)? == "true" {
            break;
        }
        if waited > Duration::from_secs(120) {
            bail!("relay 1 was not declared lost within 2 minutes");
        }
    }
    let r1 = start_relay(bins, dir, Some(&database), 3, 1, &address)?;
    let mut progress = Progress::default();
    let log = loop {
        std::thread::sleep(Duration::from_millis(200));
        let read = read_log(&r1.log)?;
        if progress.done(read.connected.len(), n) {
            break read;
        }
    };
    let survivors: Vec<fleet::RelayLog> = logs[1..].iter().map(|l| read_log(l)).collect::<Result<_>>()?;
    let dropped: usize = survivors.iter().zip(&survivors_before).map(|(a, b)| a.disconnected - b).sum();
    let (unreachable_s, online_min) = survivors
        .iter()
        .map(|l| missing(l, killed, n))
        .fold((0.0, n), |(s, m), (s2, m2)| (f64::max(s, s2), m.min(m2)));
    let quit = fleet.exited();
    drop(fleet);
    drop(r1);
    drop(relays);

    let listening = log.listening.ok_or_else(|| anyhow!("relay 1's log has no listening line"))?;
    let back_s = since(listening, log.connected.values());
    let notes = vec![
        format!(
            "one agent process: RSS {:.1} MiB, of which anonymous {:.1} MiB (the rest is the shared binary)",
            rss as f64 / 1_048_576.0,
            anon as f64 / 1_048_576.0
        ),
        format!(
            "cluster: {dropped} `agent disconnected` lines in relays 2 and 3's logs from the kill until every \
             agent was back on relay 1"
        ),
    ];
    let down_s = listening.duration_since(killed).unwrap_or_default().as_secs_f64();
    Ok(Outcome { back_s, unreachable_s, online_min, down_s, quit, notes })
}

fn alone(ctx: &Ctx, n: usize, dir: &Path, down_s: f64) -> Result<Outcome> {
    let bins = &ctx.bins;
    let mut relays = start_relays(bins, dir, None, 1)?;
    people(bins, &relays[0])?;
    let mut fleet = fleet(ctx, &relays[0], "s", n, dir, &[relays[0].log.clone()])?;
    let r1 = relays.remove(0);
    let address = r1.addr.clone();
    let killed = SystemTime::now();
    drop(r1);
    std::thread::sleep(Duration::from_secs_f64(down_s));
    let r1 = start_relay(bins, dir, None, 1, 1, &address)?;
    let mut progress = Progress::default();
    let log = loop {
        let read = read_log(&r1.log)?;
        if progress.done(read.connected.len(), n) {
            break read;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let quit = fleet.exited();
    drop(fleet);
    drop(r1);
    let listening = log.listening.ok_or_else(|| anyhow!("the relay's log has no listening line"))?;
    let unreachable = since(killed, log.connected.values()).into_iter().fold(0.0, f64::max);
    let down_s = listening.duration_since(killed).unwrap_or_default().as_secs_f64();
    Ok(Outcome {
        back_s: since(listening, log.connected.values()),
        unreachable_s: unreachable,
        online_min: 0,
        down_s,
        quit,
        notes: vec![format!("alone: down {down_s:.1} s (kill to the restarted relay's listening line)")],
    })
}

/// Whether reconnection is over: all `n` are back, or nobody new came for [`QUIET`].
#[derive(Default)]
struct Progress {
    last: Option<(usize, Instant)>,
}

impl Progress {
    fn done(&mut self, back: usize, n: usize) -> bool {
        let now = Instant::now();
        match self.last {
            Some((seen, at)) if seen == back => back >= n || now - at > QUIET,
            _ => {
                self.last = Some((back, now));
                back >= n
            }
        }
    }
}

/// Seconds from `zero` to each time (0 for any before it).
fn since<'a>(zero: SystemTime, times: impl Iterator<Item = &'a SystemTime>) -> Vec<f64> {
    times.map(|t| t.duration_since(zero).unwrap_or_default().as_secs_f64()).collect()
}

/// The most times falling in any window of one second.
fn peak_per_second(times: &[f64]) -> usize {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= 1.0 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// From a surviving relay's log: the longest an agent was not connected to it after
/// `killed` (from its disconnection to its next connection, or to the end of the log),
/// and the fewest of the `n` agents connected to it at any moment since.
fn missing(log: &fleet::RelayLog, killed: SystemTime, n: usize) -> (f64, usize) {
    let mut events: Vec<&(SystemTime, String, bool)> = log.events.iter().filter(|e| e.0 >= killed).collect();
    events.sort_by_key(|e| e.0);
    let end = events.last().map_or(killed, |e| e.0);
    let (mut online, mut fewest, mut longest) = (n, n, 0.0_f64);
    let mut gone: std::collections::HashMap<&str, SystemTime> = std::collections::HashMap::new();
    for (at, name, connected) in events {
        if *connected {
            if let Some(since) = gone.remove(name.as_str()) {
                longest = longest.max(at.duration_since(since).unwrap_or_default().as_secs_f64());
                online += 1;
            }
        } else {
            gone.insert(name, *at);
            online = online.saturating_sub(1);
            fewest = fewest.min(online);
        }
    }
    for since in gone.values() {
        longest = longest.max(end.duration_since(*since).unwrap_or_default().as_secs_f64());
    }
    (longest, fewest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_counts_the_fullest_second() {
        assert_eq!(peak_per_second(&[]), 0);
        assert_eq!(peak_per_second(&[0.1, 0.5, 0.9, 1.2, 3.0]), 3);
        assert_eq!(peak_per_second(&[2.0, 0.0, 1.0]), 1);
    }
}
