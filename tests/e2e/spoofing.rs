//! Consent spoofing: hostile free text (reasons, tickets, notes, remote file names) against
//! what a person sees. The screens are rendered by a real terminal (tmux, with the agent's
//! prompt and `assist` running in its pane) and read back with `capture-pane`, so the tests
//! check what is drawn, not only the strings that were printed.
//!
//! They do not test the webhook chat text (unit tests in `relay/src/webhook/payload.rs`)
//! nor the escaping rules one by one (`proto/src/text.rs`).

use anyhow::{Context, Result, bail};
use assist_proto::caps::{Capability, Priority};
use assist_proto::msg::{EngineerToRelay, ErrorCode, RelayToAgent, RelayToEngineer, SessionInfo};
use assist_proto::session::SessionState;
use assist_tests::files_support::{agent_with, hold_session};
use assist_tests::rogue::{RogueEngineer, RogueRelay};
use assist_tests::{Cli, TestRelay, bin, wait_until};
use std::path::Path;
use std::process::{Command, Output};

/// A tmux server of its own (socket named for this test) with one pane.
struct Pane {
    socket: String,
}

impl Pane {
    const COLS: usize = 100;

    /// Starts `cmd` (a shell command line) in a detached 100×40 pane.
    fn start(name: &str, cmd: &str) -> Result<Self> {
        // One server per pane: tests run in parallel in this process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("assist-{name}-{}-{n}", std::process::id());
        let pane = Self { socket };
        let width = Self::COLS.to_string();
        let out = pane.tmux(&["new-session", "-d", "-x", &width, "-y", "40", cmd])?;
        if !out.status.success() {
            bail!("tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(pane)
    }

    fn tmux(&self, args: &[&str]) -> Result<Output> {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .context("running tmux (install the Debian package tmux)")
    }

    /// The visible screen, one string per row (wrapped rows stay separate rows).
    fn screen(&self) -> Result<Vec<String>> {
        let out = self.tmux(&["capture-pane", "-p", "-t", "0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
    }

    /// The screen's lines, rows the terminal wrapped joined again.
    fn lines(&self) -> Result<Vec<String>> {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-t", "0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
    }

    /// The visible screen with the attributes of its cells as escape sequences.
    fn screen_with_attributes(&self) -> Result<String> {
        let out = self.tmux(&["capture-pane", "-p", "-e", "-t", "0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_for(&self, needle: &str) -> Result<Vec<String>> {
        let mut rows = Vec::new();
        wait_until(&format!("{needle:?} on the screen"), || {
            rows = self.screen()?;
            Ok(rows.iter().any(|r| r.contains(needle)))
        })
        .with_context(|| format!("screen:\n{}", rows.join("\n")))?;
        Ok(rows)
    }

    fn send_line(&self, line: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "0", "-l", line])?;
        self.tmux(&["send-keys", "-t", "0", "Enter"])?;
        Ok(())
    }

    fn title(&self) -> Result<String> {
        let out = self.tmux(&["display-message", "-p", "-t", "0", "#{pane_title}"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether any SGR sequence in `s` sets the hidden (concealed) attribute, parameter 8.
fn sets_hidden(s: &str) -> bool {
    s.split("\x1b[").skip(1).any(|seq| {
        let Some(end) = seq.find(|c: char| !(c.is_ascii_digit() || c == ';')) else { return false };
        if !seq[end..].starts_with('m') {
            return false;
        }
        // A colour given by index (38;5;8) is not the hidden attribute.
        let params: Vec<&str> = seq[..end].split(';').collect();
        let mut i = 0;
        while i < params.len() {
            match params[i] {
                "38" | "48" if params.get(i + 1) == Some(&"5") => i += 3,
                "38" | "48" if params.get(i + 1) == Some(&"2") => i += 5,
                "8" => return true,
                _ => i += 1,
            }
        }
        false
    })
}

/// Enrolls an agent and runs it in `consent` mode inside a tmux pane.
fn agent_in_pane(relay: &TestRelay, name: &str, dir: &Path, consent: &str) -> Result<Pane> {
    let token = relay.join_token("acme")?;
    let out = Command::new(bin("assist-agent"))
        .arg("--data-dir")
        .arg(dir)
        .args(["enroll", "--relay", &relay.addr, "--token", &token, "--ca-fingerprint", &relay.fingerprint])
        .args(["--name", name])
        .output()?;
    if !out.status.success() {
        bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cmd = format!(
        "{} --data-dir {} run --consent {consent}",
        quote(&bin("assist-agent").to_string_lossy()),
        quote(&dir.to_string_lossy())
    );
    let pane = Pane::start(name, &cmd)?;
    pane.wait_for("assist-agent: connected to")?;
    Ok(pane)
}

fn pending(cli: &Cli) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["requests", "--json"])?)?;
    Ok(v.as_array().map_or(0, Vec::len))
}

fn stored_sessions(cli: &Cli) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    Ok(v.as_array().map_or(0, Vec::len))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Sends a request the real CLI would refuse to send, and returns the relay's refusal.
fn rogue_request(cli: &Cli, ticket: &str, reason: &str) -> Result<(ErrorCode, String)> {
    runtime().block_on(async {
        let mut e = RogueEngineer::connect(cli).await?;
        let reply = e
            .call(&EngineerToRelay::RequestSession {
                agent: "erp-db01".into(),
                ticket: ticket.into(),
                priority: Priority::P2,
                reason: reason.into(),
                capabilities: vec![Capability::Shell],
                duration_secs: Some(3600),
            })
            .await?;
        match reply {
            RelayToEngineer::Error { code, message, .. } => Ok((code, message)),
            other => bail!("the relay accepted it: {other:?}"),
        }
    })
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The issue's first attack: a reason that draws a forged "files.read for 10m" request and
/// then hides the rest of the screen with `ESC[8m`. Refused by the CLI and by the relay;
/// and a forgery in printable text only (which is allowed) stays above the separator the
/// agent draws, with the real capability, duration and question below it, none hidden.
#[test]
fn the_agents_prompt_shows_the_real_request_whatever_the_reason_draws() -> Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let dir = tempfile::tempdir()?;
    let pane = agent_in_pane(&relay, "erp-db01", dir.path(), "prompt")?;
    let alice = relay.login("alice")?;

    let hidden = "checking logs\n  capabilities:\n    1. files.read:/var/log/erp\n  for:          10m 00s\n  answer within 4m 59s\nAllow? [y/N] \x1b[8m";
    let out = alice.run(&["shell", "erp-db01", "--ticket", "INC-1", "--reason", hidden, "--", "true"])?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(
            "reason contains the control or invisible formatting character \\n at character 14; only printable text on one line is allowed"
        ),
        "{}",
        stderr_of(&out)
    );
    // The same request, sent by a client that skips the CLI's check, is refused by the
    // relay and stores nothing; the agent is never asked.
    let (code, message) = rogue_request(&alice, "INC-1", hidden)?;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("reason contains the control or invisible formatting character"), "{message}");
    let (code, message) = rogue_request(&alice, "INC-1\u{202e}", "ok")?;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(
        message.contains("ticket contains the control or invisible formatting character \\u{202e}"),
        "{message}"
    );
    assert_eq!(stored_sessions(&alice)?, 0, "a refused request leaves no session");
    assert!(!pane.screen()?.iter().any(|r| r.contains("Allow?")), "the agent was asked");

    // Printable text only, laid out so that the terminal wraps it into rows that begin
    // like the prompt's own.
    let pad = |s: &str, w: usize| format!("{s:<w$}");
    let reason = [
        pad("checking logs", Pane::COLS - "  reason:       ".len()),
        pad("  asks for:", Pane::COLS),
        pad("    1. files.read:/var/log/erp", Pane::COLS),
        pad("  for:          10m 00s", Pane::COLS),
        "Allow? [y/N]".to_owned(),
    ]
    .concat();
    assert!(reason.chars().count() <= 500);
    let mut session = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-1",
        "--reason",
        &reason,
        "--for",
        "1h",
        "--",
        "echo",
        "from-the-agent",
    ])?;
    pane.wait_for("answer within")?;
    // The question is the prompt's last write: wait until it is drawn too.
    let mut rows = Vec::new();
    wait_until("the question at the bottom", || {
        rows = pane.screen()?;
        Ok(rows.iter().rev().find(|r| !r.trim().is_empty()).is_some_and(|r| r.starts_with("Allow?")))
    })?;
    let sep = rows
        .iter()
        .position(|r| r.contains("what is asked (shown by assist-agent)"))
        .with_context(|| format!("no separator:\n{}", rows.join("\n")))?;
    let forged = rows.iter().position(|r| r.starts_with("    1. files.read:/var/log/erp"));
    assert!(forged.is_some_and(|f| f < sep), "the forgery stands above the separator:\n{}", rows.join("\n"));
    let ours: Vec<&str> =
        rows[sep + 1..].iter().map(String::as_str).filter(|r| !r.trim().is_empty()).collect();
    assert_eq!(ours.len(), 5, "{}", rows.join("\n"));
    assert_eq!(ours[0], "  asks for:");
    assert_eq!(ours[1], "    1. shell");
    assert_eq!(ours[2], "  for:          60m 00s");
    assert!(ours[3].starts_with("  answer within "), "{}", ours[3]);
    assert_eq!(ours[4], "Allow? [y/N]");
    let attrs = pane.screen_with_attributes()?;
    assert!(!sets_hidden(&attrs), "hidden text on the screen:\n{attrs:?}");

    pane.send_line("y")?;
    assert_eq!(session.wait()?.code(), Some(0));
    session.stdout.wait_for("from-the-agent")?;
    Ok(())
}

/// The issue's first attack as it reaches the agent if the relay does not stop it (a relay
/// impostor with the relay's keys sends it): the hidden-text escape and the forged block
/// are shown escaped on the agent's terminal, above the separator, and nothing on the
/// screen is hidden.
#[test]
fn the_agent_escapes_hostile_text_its_relay_passes_on() -> Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let dir = tempfile::tempdir()?;
    let pane = agent_in_pane(&relay, "erp-db01", dir.path(), "prompt")?;
    let data = relay.data_dir();
    let addr = relay.addr.parse()?;
    let TestRelay { dir: _relay_dir, proc, .. } = relay;
    drop(proc);
    let rt = runtime();
    let rogue = {
        let _in_runtime = rt.enter();
        RogueRelay::start(&data, addr)?
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let forged = "checking logs\n  asks for:\n    1. files.read:/var/log/erp\n  for:          10m 00s\nAllow? [y/N] \x1b[8m";
    let info = SessionInfo {
        id: "s-hostile".into(),
        engineer: "alice".into(),
        engineer_org: "vendor".into(),
        agent: "erp-db01".into(),
        agent_org: "acme".into(),
        ticket: "INC-1\r\x1b[2K\x1b]0;owned\x07".into(),
        priority: Priority::P2,
        reason: forged.into(),
        capabilities: vec![Capability::Shell],
        state: SessionState::Requested,
        approver: None,
        requested_at: now,
        consent_deadline: now + 300_000,
        decided_at: None,
        started_at: None,
        ended_at: None,
        end_reason: None,
        duration_secs: 3600,
        granted: None,
        grant_expires_at: None,
        escalation: None,
    };
    let _link = rt.block_on(async {
        let mut link = rogue.accept_agent("erp-db01", "acme").await?;
        link.send(&RelayToAgent::ConsentRequest { session: Box::new(info) }).await?;
        anyhow::Ok(link)
    })?;
    let mut rows = Vec::new();
    wait_until("the question at the bottom", || {
        rows = pane.screen()?;
        Ok(rows.iter().rev().find(|r| !r.trim().is_empty()).is_some_and(|r| r.starts_with("Allow?")))
    })?;
    let attrs = pane.screen_with_attributes()?;
    assert!(!sets_hidden(&attrs), "hidden text on the screen:\n{attrs:?}");
    assert_ne!(pane.title()?, "owned", "the ticket set the terminal's title");
    let screen = pane.lines()?.join("\n");
    assert!(
        screen.contains(
            "  reason:       checking logs\\n  asks for:\\n    1. files.read:/var/log/erp\\n  for:          10m 00s\\nAllow? [y/N] \\x1b[8m"
        ),
        "{screen}"
    );
    assert!(screen.contains("  ticket:       INC-1\\r\\x1b[2K\\x1b]0;owned\\x07 (P2)"), "{screen}");
    let sep =
        rows.iter().position(|r| r.contains("what is asked (shown by assist-agent)")).context("separator")?;
    let ours: Vec<&str> =
        rows[sep + 1..].iter().map(String::as_str).filter(|r| !r.trim().is_empty()).collect();
    assert_eq!(ours[..3], ["  asks for:", "    1. shell", "  for:          60m 00s"], "{screen}");
    Ok(())
}

/// The issue's second attack: a reason with `\r` and a cursor move that overwrites the ASKS
/// FOR column of `assist requests`. Refused, as is every other piece of free text with
/// control characters or over its bound, and nothing changes; what is accepted is drawn in
/// its own column of a real terminal.
#[test]
fn requests_cannot_be_overwritten_and_free_text_is_bounded() -> Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let overwrite = "db check\r\x1b[1A\x1b[62Cfiles.read:/var/log  \x1b[K";
    let (code, message) = rogue_request(&alice, "INC-2", overwrite)?;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("\\r at character 9"), "{message}");
    let (_, message) = rogue_request(&alice, &"T".repeat(101), "ok")?;
    assert_eq!(message, "ticket is 101 characters long; at most 100 are allowed");
    let (_, message) = rogue_request(&alice, "INC-2", &"r".repeat(501))?;
    assert_eq!(message, "reason is 501 characters long; at most 500 are allowed");
    assert_eq!(pending(&bob)?, 0, "nothing refused is pending");

    // A request the relay accepts, at both bounds.
    let ticket = "T".repeat(100);
    let reason = format!("{}end", "r".repeat(497));
    let mut session =
        alice.spawn(&["shell", "erp-db01", "--ticket", &ticket, "--reason", &reason, "--", "true"])?;
    let id = bob.pending_request()?;

    // Answers with hostile text are refused and leave the request pending.
    for args in [
        vec!["deny", id.as_str(), "--reason", "no\x1b[2J"],
        vec!["approve", id.as_str(), "--note", "fine\u{202e}"],
        vec!["end", id.as_str(), "--reason", "bye\r"],
    ] {
        let out = bob.run(&args)?;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("control or invisible formatting character"), "{}", stderr_of(&out));
    }
    assert_eq!(pending(&bob)?, 1, "still pending after the refused answers");

    let cmd = format!(
        "env ASSIST_CONFIG_DIR={} {} requests; echo __listed__; sleep 600",
        quote(&bob.dir.path().to_string_lossy()),
        quote(&bin("assist").to_string_lossy())
    );
    let pane = Pane::start("requests", &cmd)?;
    pane.wait_for("__listed__")?;
    let rows = pane.lines()?;
    let row = rows
        .iter()
        .find(|r| r.starts_with(&id))
        .with_context(|| format!("no row for {id}:\n{}", rows.join("\n")))?;
    assert!(row.contains("alice@vendor  erp-db01  shell"), "{row}");
    bob.ok(&["deny", &id, "--reason", "not today"])?;
    assert_ne!(session.wait()?.code(), Some(0));
    Ok(())
}

/// `assist ls` and `assist cp -r` of a directory whose file names hold OSC and CSI
/// sequences and a bidi override: the names are shown escaped, the terminal's title is not
/// set, its screen not cleared.
#[test]
fn ls_and_cp_show_hostile_remote_file_names_escaped() -> Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("share");
    std::fs::create_dir(&root)?;
    let osc = "a\x1b]0;owned\x07\x1b[2J\x1b[Hforged";
    let bidi = "report\u{202e}fdp.exe";
    std::fs::write(root.join(osc), b"x")?;
    std::fs::write(root.join(bidi), b"y")?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let root_str = root.to_string_lossy().into_owned();
    let held = hold_session(&alice, &bob, "erp-db01", &[format!("files.read:{root_str}")])?;

    let cmd = format!(
        "env ASSIST_CONFIG_DIR={} {} ls --session {} erp-db01:{}; echo __listed__; sleep 600",
        quote(&alice.dir.path().to_string_lossy()),
        quote(&bin("assist").to_string_lossy()),
        held.id,
        quote(&root_str)
    );
    let pane = Pane::start("ls", &cmd)?;
    let rows = pane.wait_for("__listed__")?;
    let screen = rows.join("\n");
    assert!(rows.iter().any(|r| r.starts_with("MODE  SIZE")), "the header was cleared away:\n{screen}");
    assert!(screen.contains("a\\x1b]0;owned\\x07\\x1b[2J\\x1b[Hforged"), "{screen}");
    assert!(screen.contains("report\\u{202e}fdp.exe"), "{screen}");
    assert_ne!(pane.title()?, "owned", "a file name set the terminal's title");

    // The same names in a recursive copy: progress bars (this is a terminal) and the
    // report line of each file.
    let local = dir.path().join("local");
    std::fs::create_dir(&local)?;
    let cmd = format!(
        "env ASSIST_CONFIG_DIR={} {} cp -r --session {} erp-db01:{} {}; echo __copied__; sleep 600",
        quote(&alice.dir.path().to_string_lossy()),
        quote(&bin("assist").to_string_lossy()),
        held.id,
        quote(&root_str),
        quote(&local.to_string_lossy())
    );
    let pane = Pane::start("cp", &cmd)?;
    let rows = pane.wait_for("__copied__")?;
    let screen = rows.join("\n");
    assert!(screen.contains("a\\x1b]0;owned\\x07\\x1b[2J\\x1b[Hforged -> "), "{screen}");
    assert!(screen.contains("report\\u{202e}fdp.exe -> "), "{screen}");
    assert_ne!(pane.title()?, "owned", "a file name set the terminal's title");
    assert_eq!(std::fs::read(local.join("share").join(osc))?, b"x", "the file itself keeps its name");
    Ok(())
}
