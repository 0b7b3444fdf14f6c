//! The relay on PostgreSQL (`--database postgres://…`, here through `ASSIST_DATABASE` for
//! the relay and its administration commands alike), end to end with the real binaries
//! and a PostgreSQL server of the test binary's own (`assist-testpg`): the first admin is
//! made in the new database, an agent enrolls, a shell session is requested, approved,
//! used and ended, the console signs a user in, and `audit verify --database` finds the
//! chain intact. The rows are read back with `psql`, to show they live in PostgreSQL.

use assist_tests::browser::Browser;
use assist_tests::{TestRelay, wait_until};

fn relay_on_postgres() -> anyhow::Result<(assist_testpg::Database, TestRelay)> {
    let db = assist_testpg::database();
    let env = vec![("ASSIST_DATABASE".to_owned(), db.url().to_owned())];
    let relay = TestRelay::start_with_env(tempfile::tempdir()?, "127.0.0.1:0", &[], env)?;
    Ok((db, relay))
}

/// One value a line, from `psql` on the test's database.
fn psql(db: &assist_testpg::Database, sql: &str) -> anyhow::Result<String> {
    assist_testpg::server().psql(db.name(), sql).map_err(anyhow::Error::msg)
}

#[test]
fn a_session_on_postgresql_is_approved_used_ended_and_audited() -> anyhow::Result<()> {
    let (db, relay) = relay_on_postgres()?;
    assert!(!relay.admin_password.is_empty(), "the first admin is made in the new database");
    assert_eq!(psql(&db, "SELECT name || ':' || role FROM users")?.trim(), "admin:admin");
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-18",
        "--reason",
        "check the store",
        "--",
        "echo",
        "hello from postgres",
    ])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    shell.stdout.wait_for("hello from postgres")?;
    assert_eq!(shell.wait()?.code(), Some(0));
    let state = format!("SELECT state FROM sessions WHERE id = '{id}'");
    wait_until("the session to be closed in PostgreSQL", || Ok(psql(&db, &state)?.trim() == "closed"))?;

    let actions = psql(&db, "SELECT action FROM audit_events ORDER BY seq")?;
    let actions: Vec<&str> = actions.lines().collect();
    for a in ["agent.enrolled", "session.requested", "session.approved", "session.ended"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // The flag form, on the chain as the relay wrote it.
    let verified = relay.admin(&["--database", db.url(), "audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");
    assert!(verified.contains(&format!("{} events", actions.len())), "{verified} / {}", actions.len());
    Ok(())
}

#[test]
fn the_console_signs_in_on_postgresql() -> anyhow::Result<()> {
    let (db, relay) = relay_on_postgres()?;
    relay.standard_world()?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    crate::console::sign_in(&b, &url, "alice")?;
    assert!(b.text("#who")?.contains("alice"));
    assert_eq!(psql(&db, "SELECT \"user\" FROM console_sessions")?.trim(), "alice");
    let signed_in = psql(&db, "SELECT count(*) FROM audit_events WHERE action = 'console.signed_in'")?;
    assert_eq!(signed_in.trim(), "1");
    Ok(())
}
