//! Lists longer than one frame (64 KiB): a relay's answer to `assist sessions` after more
//! sessions than one frame can list, each with as long a reason as is allowed, comes whole
//! (in parts, joined by the CLI).

use assist_proto::frame::MAX_FRAME_LEN;
use assist_proto::text::MAX_REASON_CHARS;
use assist_tests::TestRelay;

/// Enough sessions with 500-character reasons to need two frames or more.
const SESSIONS: usize = 96;
/// Sessions run at once (each is a short `assist shell … -- true`).
const AT_ONCE: usize = 8;

#[test]
fn a_history_longer_than_one_frame_is_listed_whole() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    // Unattended consent for alice's shells: nobody needs to answer 96 requests.
    relay.admin(&[
        "window",
        "add",
        "--org",
        "acme",
        "--schedule",
        "* * * * *",
        "--duration",
        "1h",
        "--capability",
        "shell",
        "--engineer",
        "alice",
    ])?;
    let _agent = relay.agent("erp-db01", "acme", "window")?;
    let alice = relay.login("alice")?;
    let reason = "r".repeat(MAX_REASON_CHARS);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..AT_ONCE)
            .map(|w| {
                let (alice, reason) = (&alice, &reason);
                s.spawn(move || -> anyhow::Result<()> {
                    for i in (w..SESSIONS).step_by(AT_ONCE) {
                        let ticket = format!("INC-{i:03}");
                        let out = alice.run(&[
                            "shell", "erp-db01", "--ticket", &ticket, "--reason", reason, "--", "true",
                        ])?;
                        anyhow::ensure!(
                            out.status.success(),
                            "{ticket}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker panicked")?;
        }
        Ok(())
    })?;

    let text = alice.ok(&["sessions", "--json"])?;
    assert!(text.len() > MAX_FRAME_LEN, "the list ({} bytes) must be longer than one frame", text.len());
    let listed: serde_json::Value = serde_json::from_str(&text)?;
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), SESSIONS, "every session, once");
    let mut tickets: Vec<&str> = listed.iter().filter_map(|s| s["ticket"].as_str()).collect();
    tickets.sort_unstable();
    tickets.dedup();
    assert_eq!(tickets.len(), SESSIONS, "no session twice, none missing");
    // The table form reads the same joined list.
    let table = alice.ok(&["sessions"])?;
    assert!(table.contains("INC-000") && table.contains(&format!("INC-{:03}", SESSIONS - 1)), "{table}");
    Ok(())
}
