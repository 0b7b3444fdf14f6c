//! Smoke test: `assist-bench all --quick --no-ssh` runs end to end on the debug binaries
//! (relay, agent and CLI must be built: `cargo build --bins`, as `scripts/test` does; the
//! cluster figures need Debian's `postgresql`, as the e2e tests do) and
//! writes its JSON. It checks that every figure was measured, never how fast: targets are
//! for the full run, on release binaries, and are not asserted anywhere.

use std::path::Path;
use std::process::Command;

#[test]
fn quick_run_measures_every_figure_and_writes_json() {
    let exe = Path::new(env!("CARGO_BIN_EXE_assist-bench"));
    let bins = exe.parent().expect("target dir");
    for name in ["assist-relay", "assist-agent", "assist"] {
        assert!(bins.join(name).is_file(), "{name} is missing: run `cargo build --bins` first");
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("quick.json");
    let out = Command::new(exe).args(["all", "--quick", "--no-ssh", "--json"]).arg(&json).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("skipped: --no-ssh"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);
    let figures = report["figures"].as_array().unwrap();
    for id in [
        "bulk_mib_s",
        "relay_cpu_s_per_gib",
        "cp_mib_s",
        "cp_upload_mib_s",
        "echo_p50_us",
        "echo_p99_us",
        "setup_ms",
        "tunnel_bulk_mib_s",
        "forward_setup_ms",
        "forward_concurrent_ms",
        "idle_bytes_per_agent_n100",
        "console_request_p50_ms",
        "console_requests_list_p50_ms",
        "console_sessions_list_p99_ms",
        "cluster_setup_ms",
        "cluster_approval_ms",
        "cluster_bulk_mib_s",
        "cluster_idle_bytes_per_agent",
        "cluster_kill_unreachable_s",
        "cluster_reconnect_p95_s",
        "cluster_reconnect_peak_per_s",
    ] {
        let figure = figures.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no figure {id}"));
        let subject = figure["series"].as_array().unwrap().iter().find(|s| s["variant"] == figure["subject"]);
        let median = subject.and_then(|s| s["median"].as_f64()).unwrap_or_else(|| panic!("{id}: no median"));
        assert!(median >= 0.0, "{id}: {median}");
    }
    // Behaviour, not speed: in the cluster no agent left a surviving relay when another died.
    let kept = figures.iter().find(|f| f["id"] == "cluster_kill_online_min").unwrap();
    let agents = report["settings"]["cluster_agents"].as_f64().unwrap();
    assert_eq!(kept["series"][0]["median"].as_f64(), Some(agents), "{kept}");
    let bulk = figures.iter().find(|f| f["id"] == "bulk_mib_s").unwrap();
    assert!(bulk["ratios"].as_array().unwrap().iter().any(|r| r["baseline"] == "direct quinn"));
}
