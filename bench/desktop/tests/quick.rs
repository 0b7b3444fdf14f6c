//! Smoke test: a few frames of each content through both encoders and a few grabs of
//! each kind, under the run's own Xvfb; checks every figure was measured and written,
//! never how fast (targets are for the full release run and are not asserted anywhere).

use std::process::Command;

#[test]
fn quick_run_measures_every_figure_and_writes_json() {
    let dir = std::env::temp_dir().join(format!("assist-bench-desktop-test.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("quick.json");
    let out = Command::new(env!("CARGO_BIN_EXE_assist-bench-desktop"))
        .args(["--quick", "--frames", "4", "--grabs", "3", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let figures = report["figures"].as_array().unwrap();
    for id in [
        "desktop_encode_ms_typing",
        "desktop_encode_ms_scrolling",
        "desktop_encode_ms_full",
        "desktop_mbit_s_typing",
        "desktop_mbit_s_scrolling",
        "desktop_mbit_s_full",
        "desktop_grab_ms",
        "desktop_idle_cpu_ms_per_s",
    ] {
        let figure = figures.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no figure {id}"));
        for series in figure["series"].as_array().unwrap() {
            let median = series["median"].as_f64().unwrap_or_else(|| panic!("{id}: no median"));
            assert!(median >= 0.0, "{id}: {median}");
        }
    }
}
