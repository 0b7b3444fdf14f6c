//! Smoke test: a few frames of each content through both encoders, a few grabs of each
//! kind, and the live path (the real relay and agent next to this binary, a headless
//! Chromium viewing a 640×480 desktop, ffmpeg's x11grab) for a second and a half per
//! content, under the run's own Xvfb. It checks every figure was measured and written,
//! never how fast (targets are for the full release run and are not asserted anywhere).
//! The product's binaries must be built first (`cargo build --workspace --bins`, as
//! `scripts/test` does).

use std::path::Path;
use std::process::Command;

#[test]
fn quick_run_measures_every_figure_and_writes_json() {
    let exe = Path::new(env!("CARGO_BIN_EXE_assist-bench-desktop"));
    let bins = exe.parent().expect("target dir");
    for name in ["assist-relay", "assist-agent", "assist"] {
        assert!(bins.join(name).is_file(), "{name} is missing: run `cargo build --workspace --bins` first");
    }
    let dir = std::env::temp_dir().join(format!("assist-bench-desktop-test.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("quick.json");
    let out = Command::new(exe)
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
        "desktop_live_fps_typing",
        "desktop_live_fps_scrolling",
        "desktop_live_fps_full",
        "desktop_live_cpu_ms_per_frame_typing",
        "desktop_live_cpu_ms_per_frame_scrolling",
        "desktop_live_cpu_ms_per_frame_full",
        "desktop_live_mbit_s_typing",
        "desktop_live_mbit_s_scrolling",
        "desktop_live_mbit_s_full",
        "desktop_live_g2g_p50_ms_typing",
        "desktop_live_g2g_p95_ms_scrolling",
        "desktop_live_g2g_p50_ms_full",
    ] {
        let figure = figures.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no figure {id}"));
        for series in figure["series"].as_array().unwrap() {
            let median = series["median"].as_f64().unwrap_or_else(|| panic!("{id}: no median"));
            assert!(median >= 0.0, "{id}: {median}");
        }
    }
    // Frames reached the page and their clock was read.
    let live = |id: &str| {
        let f = figures.iter().find(|f| f["id"] == id).unwrap();
        f["series"][0]["median"].as_f64().unwrap()
    };
    assert!(live("desktop_live_fps_typing") > 0.0, "{stdout}");
    assert!(live("desktop_live_g2g_p50_ms_typing") > 0.0, "{stdout}");
    assert!(report["live_summary"].as_str().is_some_and(|s| s.contains("SIMD")), "{stdout}");
}
