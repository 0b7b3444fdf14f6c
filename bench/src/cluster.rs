//! `cluster` (issue 18): several relays on PostgreSQL as one, side by side in one run with
//! one relay on SQLite (the other figures' relay) and one relay on PostgreSQL alone (which
//! separates the database's cost from the cluster's).
//!
//! - Session setup and bulk (this module): three places started once, used in turn round
//!   by round (A B C A B C …). In the cluster the agent enrolled through relay 1 and keeps a
//!   connection to all three, the engineer asks on relay 2 and the approver answers on
//!   relay 3, whose answer reaches relay 2 (the session's holder) over PostgreSQL
//!   `LISTEN/NOTIFY`. No channel crosses two relays in this design: relay 2 splices the
//!   agent's connection to the engineer's and records, as a single relay does. Alone, all
//!   three are on the one relay. The approval is bob's real `assist approve`, run the
//!   moment the engineer's client says it asked, in every variant.
//! - Idle agents per relay: [`crate::cluster_idle`].
//! - A relay killed under 1,000 real agents: [`crate::cluster_kill`].
//!
//! The benchmark's own PostgreSQL ([`crate::pg`]) serves every variant on it, each on a
//! database of its own. Nothing here is asserted: figures are printed beside their
//! baselines.

use crate::cluster_world::{Place, start_relays};
use crate::pg::{self, Postgres};
use crate::procs::cpu_seconds;
use crate::report::{Better, Figure, Series};
use crate::world::make_file;
use crate::{Ctx, bulk};
use anyhow::{Context, Result};
use std::time::Duration;

/// The variants' names: the subject first.
pub const CLUSTER: &str = "3 relays, PostgreSQL";
pub const SQLITE: &str = "1 relay, SQLite";
pub const PG_ALONE: &str = "1 relay, PostgreSQL";

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// Runs the three groups of cluster figures, each recorded on its own (one that fails
/// does not take the others with it).
pub fn run(ctx: &Ctx, record: &mut dyn FnMut(&str, Result<Vec<Figure>>)) {
    let pg = match pg::ensure_installed(ctx.settings.install).and_then(Postgres::start) {
        Ok(pg) => pg,
        Err(e) => return record("cluster", Err(e.context("starting PostgreSQL"))),
    };
    eprintln!("assist-bench: cluster: PostgreSQL running in {}", pg.dir().display());
    record("cluster sessions", sessions(ctx, &pg));
    record("cluster idle", crate::cluster_idle::run(ctx, &pg));
    record("cluster kill", crate::cluster_kill::run(ctx, &pg));
}

/// Deletes the place's finished recordings: three variants recording every round of a
/// 1 GiB transfer would fill a small disk, and nothing reads them.
fn forget_recordings(place: &Place) -> Result<()> {
    for relay in &place.relays {
        // A relay that never recorded may have no directory.
        let Ok(entries) = std::fs::read_dir(relay.data.join("recordings")) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "arec") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Session setup and bulk through each variant, interleaved.
fn sessions(ctx: &Ctx, pg: &Postgres) -> Result<Vec<Figure>> {
    let bins = &ctx.bins;
    let dir = ctx.dir.join("cluster-sessions");
    let place = |name: &str, database: Option<String>, n: usize, engineer: usize, approver: usize| {
        let d = dir.join(name);
        let relays = start_relays(bins, &d, database.as_deref(), n)?;
        Place::start(bins, &d, relays, engineer, approver).with_context(|| format!("starting {name}"))
    };
    let places = [
        (CLUSTER, place("cluster", Some(pg.create_database("sessions_cluster")?), 3, 1, 2)?),
        (SQLITE, place("sqlite", None, 1, 0, 0)?),
        (PG_ALONE, place("pg", Some(pg.create_database("sessions_alone")?), 1, 0, 0)?),
    ];
    let limit = Duration::from_secs(60);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let [mut setup, mut total, mut window]: [[Vec<f64>; 3]; 3] = Default::default();
    for round in 1..=ctx.settings.setup_rounds {
        eprintln!("assist-bench: cluster setup round {round}/{}", ctx.settings.setup_rounds);
        for (i, (_, p)) in places.iter().enumerate() {
            let a = p.session(&["true"], limit)?;
            setup[i].push(ms(a.took.saturating_sub(a.window)));
            total[i].push(ms(a.took));
            window[i].push(ms(a.window));
        }
    }

    let size = ctx.settings.bulk_bytes;
    let file = ctx.dir.join("bulk.bin");
    make_file(&file, size)?;
    let file = file.to_string_lossy().into_owned();
    let limit = Duration::from_secs(60 + size / (5 << 20));
    let [mut mibs, mut cpu]: [[Vec<f64>; 3]; 2] = Default::default();
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: cluster bulk round {round}/{}", ctx.settings.rounds);
        for (i, (name, p)) in places.iter().enumerate() {
            // The relay holding the session: the engineer's.
            let holder = if *name == CLUSTER { p.relays[1].proc.pid() } else { p.relays[0].proc.pid() };
            let cpu0 = cpu_seconds(holder)?;
            let a = p.session(&["cat", &file], limit)?;
            mibs[i].push(size as f64 / MIB / a.took.as_secs_f64());
            cpu[i].push((cpu_seconds(holder)? - cpu0) / (size as f64 / GIB));
            forget_recordings(p)?;
        }
    }
    drop(places);

    let figure = |id: &str, title: &str, unit: &str, better: Better, samples: [Vec<f64>; 3]| {
        let mut f = Figure::new(id, title, unit, better, CLUSTER);
        for (name, s) in [CLUSTER, SQLITE, PG_ALONE].into_iter().zip(samples) {
            f.push(Series::new(name, s));
        }
        f
    };
    let mut f_setup = figure(
        "cluster_setup_ms",
        "cluster: session setup, request -> remote `true` ran (approval excluded)",
        "ms",
        Better::Lower,
        setup,
    );
    f_setup.note(
        "cluster: engineer on relay 2, approver on relay 3, agent enrolled through relay 1 and connected \
         to all three; no channel crosses two relays in this design (relay 2 holds, splices and records \
         the session); alone: everyone on the one relay",
    );
    f_setup.note("whole `assist shell AGENT -T -- true` minus the client's requested -> approved window");
    let mut f_total =
        figure("cluster_setup_total_ms", "cluster: session setup, whole process", "ms", Better::Lower, total);
    f_total.note("includes bob's `assist approve` (a process of its own) started on the requested line");
    let mut f_window = figure(
        "cluster_approval_ms",
        "cluster: approval, the client's requested -> approved lines",
        "ms",
        Better::Lower,
        window,
    );
    f_window.note(
        "bob's whole `assist approve` process; in the cluster it runs on relay 3 and its answer reaches \
         relay 2 over PostgreSQL LISTEN/NOTIFY",
    );
    let mut f_bulk = figure(
        "cluster_bulk_mib_s",
        &format!("cluster: bulk {} agent -> engineer", bulk::human_size(size)),
        "MiB/s",
        Better::Higher,
        mibs,
    );
    f_bulk.note("whole `assist shell AGENT -T -- cat FILE`, session set-up and approval included, recorded");
    let mut f_cpu = figure(
        "cluster_relay_cpu_s_per_gib",
        "cluster: CPU of the relay holding the session, per GiB",
        "CPU s/GiB",
        Better::Lower,
        cpu,
    );
    f_cpu.note("user+system time of the holder (cluster: relay 2) from /proc around each bulk transfer");
    for f in [&mut f_setup, &mut f_bulk] {
        f.note(
            "PostgreSQL with its durability defaults (fsync, synchronous_commit on), on loopback TCP; \
             SQLite in WAL mode with synchronous FULL (sqlx's default)",
        );
    }
    Ok([f_setup, f_total, f_window, f_bulk, f_cpu].into_iter().map(Figure::finish).collect())
}
