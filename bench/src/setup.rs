//! Session setup: request → the remote command has run (`true`), whole process.
//!
//! - assist: `assist shell AGENT -T -- true`, stdout discarded, stderr read line by line
//!   with each line stamped as it arrives. The agent runs `--consent prompt` and the
//!   harness answers `y` the moment the prompt arrives (see [`crate::world`]). The
//!   approval is then excluded by subtraction: the time between the client's
//!   `assist: session … requested` and `assist: approved by …` lines is taken off the
//!   whole-process time. That window holds the consent round trip (relay → agent prompt →
//!   answer → relay stores the decision and signs the grant → client), which a person
//!   would stretch to seconds. The unsubtracted time, with the instant automatic answer, is
//!   reported too, and so is the window itself.
//! - `ssh target true` and `ssh -J jump target true`, whole process.

use crate::Ctx;
use crate::procs::{Line, timed};
use crate::report::{Better, Figure, Series};
use anyhow::{Result, anyhow};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn at(lines: &[Line], prefix: &str, contains: &str) -> Result<Instant> {
    lines
        .iter()
        .find(|l| l.text.starts_with(prefix) && l.text.contains(contains))
        .map(|l| l.at)
        .ok_or_else(|| anyhow!("the client printed no {prefix:?} line"))
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (mut excl, mut total, mut approval, mut ssh, mut jump) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=ctx.settings.setup_rounds {
        eprintln!("assist-bench: setup round {round}/{}", ctx.settings.setup_rounds);
        let (took, lines) = timed("assist shell -- true", &mut world.shell(&["-T", "--", "true"]), LIMIT)?;
        let requested = at(&lines, "assist: session ", " requested")?;
        let approved = at(&lines, "assist: approved by", "")?;
        let window = approved.saturating_duration_since(requested);
        total.push(ms(took));
        approval.push(ms(window));
        excl.push(ms(took.saturating_sub(window)));
        if let Ok(s) = &ctx.ssh {
            ssh.push(ms(timed("ssh true", &mut s.command(false, &[], &["true"]), LIMIT)?.0));
            jump.push(ms(timed("ssh -J true", &mut s.command(true, &[], &["true"]), LIMIT)?.0));
        }
    }
    let baselines = |f: &mut Figure, ssh: &[f64], jump: &[f64]| {
        for (name, samples) in [("ssh", ssh), ("ssh -J", jump)] {
            f.push(match &ctx.ssh {
                Ok(_) => Series::new(name, samples.to_vec()),
                Err(why) => Series::skipped(name, why),
            });
        }
    };
    let mut setup = Figure::new(
        "setup_ms",
        "session setup, request -> remote `true` ran (approval excluded)",
        "ms",
        Better::Lower,
        "assist",
    )
    .target("ssh -J", 0.2);
    setup.push(Series::new("assist", excl));
    baselines(&mut setup, &ssh, &jump);
    setup.note(
        "assist: whole `assist shell AGENT -T -- true` process minus the client's requested->approved \
         window (stderr lines stamped on arrival); the agent's prompt is answered by the harness at once",
    );
    setup.note("ssh: whole `ssh target true` / `ssh -J jump target true` process");

    let mut whole_fig = Figure::new(
        "setup_total_ms",
        "session setup, whole process with the automatic approval",
        "ms",
        Better::Lower,
        "assist",
    );
    whole_fig.push(Series::new("assist", total));
    baselines(&mut whole_fig, &ssh, &jump);
    whole_fig.note("no subtraction: includes the consent round trip with an instant answer");

    let mut window = Figure::new(
        "approval_window_ms",
        "consent round trip with an instant answer (requested -> approved, at the client)",
        "ms",
        Better::Lower,
        "assist",
    );
    window.push(Series::new("assist", approval));
    Ok(vec![setup.finish(), whole_fig.finish(), window.finish()])
}
