//! Failed logins make later attempts wait, per user name and per source address, with the
//! real `assist login`; the refusal never says which of name or password was wrong, the
//! right password is refused while the name must wait, and the audit log holds one
//! `login.throttled` row per wait, not one row per refused attempt.

use assist_tests::{Cli, TestRelay};
use serde_json::Value;

/// One `assist login` attempt; `Ok(())` when it succeeded, else its error output.
fn attempt(relay: &TestRelay, user: &str, password: &str) -> anyhow::Result<Result<(), String>> {
    let cli = Cli { dir: tempfile::tempdir()?, relay: relay.addr.clone() };
    let out = cli.run_stdin(
        &[
            "login",
            "--relay",
            &relay.addr,
            "--user",
            user,
            "--password-stdin",
            "--ca-fingerprint",
            &relay.fingerprint,
        ],
        &format!("{password}\n"),
    )?;
    Ok(match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

fn audit(relay: &TestRelay, action: &str) -> anyhow::Result<Vec<Value>> {
    let all: Value = serde_json::from_str(&relay.admin(&["audit", "list", "--json"])?)?;
    Ok(all.as_array().cloned().unwrap_or_default().into_iter().filter(|e| e["action"] == action).collect())
}

#[test]
fn failed_logins_make_the_user_wait_even_with_the_right_password() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&[
        "--login-failures",
        "3",
        // Long enough that no attempt of this test outlives it on a loaded machine; the end
        // of a wait is tested on a virtual clock (`broker::throttle`).
        "--login-delay",
        "10m",
        "--login-lockout",
        "1h",
        "--login-address-failures",
        "100",
    ])?;
    relay.standard_world()?;

    let wrong_password = attempt(&relay, "alice", "not-her-password")?.unwrap_err();
    let unknown_user = attempt(&relay, "nobody", "pw-alice-123")?.unwrap_err();
    assert!(wrong_password.contains("wrong user name or password"), "{wrong_password}");
    assert_eq!(wrong_password, unknown_user, "the refusal must not tell which was wrong");
    attempt(&relay, "alice", "guess-2")?.unwrap_err();
    attempt(&relay, "alice", "guess-3")?.unwrap_err();

    // Three failures: even the right password waits now, and is told for how long.
    for _ in 0..4 {
        let err = attempt(&relay, "alice", "pw-alice-123")?.unwrap_err();
        assert!(err.contains("too many attempts, try again in "), "{err}");
        assert!(!err.contains("wrong user name or password"), "{err}");
    }
    // Another user from the same address is not held up by alice's name.
    assert_eq!(attempt(&relay, "bob", "pw-bob-123")?, Ok(()));

    let throttled = audit(&relay, "login.throttled")?;
    assert_eq!(throttled.len(), 1, "one row for the wait, none per refused attempt: {throttled:?}");
    assert_eq!(throttled[0]["target"], "alice");
    assert_eq!(throttled[0]["detail"]["scope"], "user");
    assert_eq!(throttled[0]["detail"]["failures"], 3);
    assert_eq!(audit(&relay, "login.failed")?.len(), 4, "refused attempts are not checked or audited");
    let succeeded = audit(&relay, "login.succeeded")?;
    assert!(succeeded.iter().all(|e| e["actor"] != "alice"), "{succeeded:?}");
    Ok(())
}

#[test]
fn one_address_trying_many_names_waits() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&[
        "--login-address-failures",
        "4",
        "--login-delay",
        "1m",
        "--login-lockout",
        "10m",
    ])?;
    relay.standard_world()?;
    for name in ["ann", "ben", "cat", "dan"] {
        let err = attempt(&relay, name, "hunter2")?.unwrap_err();
        assert!(err.contains("wrong user name or password"), "{err}");
    }
    // Spraying names from one address: the next one, even a real user with the right
    // password, waits.
    let err = attempt(&relay, "bob", "pw-bob-123")?.unwrap_err();
    assert!(err.contains("too many attempts, try again in 1m"), "{err}");
    let throttled = audit(&relay, "login.throttled")?;
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(throttled[0]["detail"]["scope"], "address");
    assert_eq!(throttled[0]["target"], "127.0.0.1");
    Ok(())
}
