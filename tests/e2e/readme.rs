//! The README's commands, as a user copies them.

/// The README's run command must select the same packages as `cargo build --release`
/// (the whole workspace): with `-p assist-relay` cargo resolves the relay's narrower
/// feature set and recompiles eleven crates a user has just built (issue 12).
#[test]
fn the_run_command_reuses_the_workspace_build() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let run: Vec<&str> = readme.lines().filter(|l| l.trim_start().starts_with("cargo run")).collect();
    assert!(!run.is_empty(), "the README has no cargo run command");
    for line in run {
        assert!(line.contains("--bin assist-relay"), "names the binary: {line}");
        assert!(!line.split_whitespace().any(|w| w == "-p" || w.starts_with("--package")), "{line}");
    }
}
