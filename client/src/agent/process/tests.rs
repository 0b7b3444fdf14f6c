//! Real processes, real terminals. Every wait is for an event; `TIMEOUT` only turns a hang
//! into a failure, and is generous because other builds load the machine.

use std::time::Duration;

use assist_proto::msg::PtyRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

fn pipes(args: &[&str]) -> Process {
    spawn(Spec::Pipes { command: argv(args) }, &[], None).expect("spawn")
}

fn pty(args: &[&str]) -> Process {
    pty_with(Some(argv(args)), "xterm", &[])
}

fn pty_with(command: Option<Vec<String>>, term: &str, env: &[(String, String)]) -> Process {
    let request = PtyRequest { cols: 80, rows: 24, term: term.into() };
    spawn(Spec::Pty { pty: request, command }, env, None).expect("spawn")
}

/// An interactive shell with job control; its input is echoed, so tests look for output
/// that the typed line does not contain (`$((6*7))` prints 42).
fn interactive_shell() -> Process {
    pty(&["sh", "-i"])
}

async fn wait(control: &Control) -> ExitStatus {
    timeout(TIMEOUT, control.wait()).await.expect("the child did not exit")
}

async fn read_to_end(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(TIMEOUT, stream.read_to_end(&mut out)).await.expect("no EOF").expect("read");
    out
}

/// Reads a stream until expected text appears.
struct Screen {
    stream: Box<dyn AsyncRead + Send + Unpin>,
    seen: Vec<u8>,
    /// Where the next `expect` starts looking.
    pos: usize,
}

impl Screen {
    fn new(stream: Box<dyn AsyncRead + Send + Unpin>) -> Self {
        Screen { stream, seen: Vec::new(), pos: 0 }
    }

    /// Reads until `needle` appears after the previous match; returns what follows it so far.
    async fn expect(&mut self, needle: &str) {
        let found = timeout(TIMEOUT, async {
            loop {
                if let Some(at) =
                    self.seen[self.pos..].windows(needle.len()).position(|w| w == needle.as_bytes())
                {
                    self.pos += at + needle.len();
                    return true;
                }
                let mut buf = [0; 4096];
                match self.stream.read(&mut buf).await.expect("read") {
                    0 => return false,
                    n => self.seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let output = String::from_utf8_lossy(&self.seen);
        assert_eq!(found, Ok(true), "no {needle:?} in the output (timeout or EOF): {output:?}");
    }

    async fn expect_eof(&mut self) {
        let rest = read_to_end(&mut self.stream).await;
        self.seen.extend_from_slice(&rest);
    }
}

#[tokio::test]
async fn pipes_exit_code_passes_through() {
    let process = pipes(&["sh", "-c", "exit 7"]);
    assert_eq!(wait(&process.control).await, ExitStatus { code: Some(7), signal: None });
}

#[tokio::test]
async fn pipes_keep_stdout_and_stderr_apart() {
    let process = pipes(&["sh", "-c", "echo out; echo err >&2"]);
    let (out, err) =
        tokio::join!(read_to_end(process.stdout), read_to_end(process.stderr.expect("pipes have stderr")));
    assert_eq!((out, err), (b"out\n".to_vec(), b"err\n".to_vec()));
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pipes_pass_argv_without_a_shell() {
    let process = pipes(&["printf", "%s|", "a b", "$HOME", ";true"]);
    assert_eq!(read_to_end(process.stdout).await, b"a b|$HOME|;true|");
}

#[tokio::test]
async fn pipes_dropping_stdin_ends_cat() {
    let mut process = pipes(&["cat"]);
    process.stdin.write_all(b"hello\n").await.expect("write");
    drop(process.stdin);
    assert_eq!(read_to_end(process.stdout).await, b"hello\n");
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pipes_write_after_exit_fails() {
    let mut process = pipes(&["true"]);
    wait(&process.control).await;
    // A process forked at the same moment by another test inherits the pipe's read end
    // until it execs, so the first writes may still land in the pipe; then they fail.
    let failed = timeout(TIMEOUT, async {
        loop {
            if let Err(e) = process.stdin.write_all(b"late\n").await {
                return e;
            }
        }
    });
    assert_eq!(failed.await.expect("writes never failed").kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn pipes_kill_ends_the_child() {
    let process = pipes(&["sleep", "100"]);
    process.control.kill();
    process.control.kill();
    assert_eq!(wait(&process.control).await, ExitStatus { code: None, signal: Some("SIGKILL".into()) });
    // Awaiting again gives the same answer.
    assert_eq!(process.control.wait().await.signal.as_deref(), Some("SIGKILL"));
}

#[tokio::test]
async fn pipes_dropping_control_kills_the_child() {
    let process = pipes(&["sleep", "100"]);
    drop(process.control);
    assert_eq!(read_to_end(process.stdout).await, b"");
}

#[tokio::test]
async fn env_and_cwd_reach_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path().canonicalize().expect("canonicalize");
    let env = [("ASSIST_TEST_VAR".to_string(), "v1".to_string())];
    let command = argv(&["sh", "-c", "echo \"$ASSIST_TEST_VAR\"; pwd -P"]);
    let process = spawn(Spec::Pipes { command }, &env, Some(&dir)).expect("spawn");
    let out = String::from_utf8(read_to_end(process.stdout).await).expect("utf-8");
    assert_eq!(out, format!("v1\n{}\n", dir.display()));
}

#[tokio::test]
async fn spawn_errors_say_what_is_wrong() {
    let request = PtyRequest { cols: 80, rows: 24, term: "xterm".into() };
    let missing = argv(&["assist-no-such-program", "arg"]);
    for spec in [
        Spec::Pipes { command: missing.clone() },
        Spec::Pty { pty: request.clone(), command: Some(missing.clone()) },
        Spec::Pipes { command: argv(&["./assist-no-such-program"]) },
    ] {
        let error = spawn(spec, &[], None).err().expect("spawn should fail");
        assert!(
            matches!(&error, ProcessError::NotFound { program } if program.contains("assist-no-such-program"))
        );
        assert!(error.to_string().contains("assist-no-such-program: command not found"), "{error}");
    }
    for spec in [Spec::Pipes { command: vec![] }, Spec::Pty { pty: request, command: Some(vec![]) }] {
        assert!(matches!(spawn(spec, &[], None), Err(ProcessError::EmptyCommand)));
    }
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    for cwd in [Path::new("/nonexistent/assist"), file.path()] {
        let error =
            spawn(Spec::Pipes { command: argv(&["true"]) }, &[], Some(cwd)).err().expect("spawn should fail");
        assert!(matches!(&error, ProcessError::Cwd { path, .. } if path == cwd), "{error}");
    }
}

#[tokio::test]
async fn pty_delivers_output_of_a_command_that_exits_at_once() {
    let process = pty(&["printf", "quick-exit"]);
    assert_eq!(read_to_end(process.stdout).await, b"quick-exit");
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pty_delivers_a_mebibyte_without_losing_the_tail() {
    let process = pty(&["sh", "-c", "printf '%1048576s' END"]);
    let out = read_to_end(process.stdout).await;
    assert_eq!(out.len(), 1 << 20);
    assert!(out.ends_with(b" END"));
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pty_exit_code_passes_through() {
    let process = pty(&["sh", "-c", "exit 7"]);
    assert_eq!(wait(&process.control).await, ExitStatus { code: Some(7), signal: None });
}

#[tokio::test]
async fn pty_has_the_requested_size_and_term() {
    let process = pty_with(Some(argv(&["sh", "-c", "stty size; echo \"$TERM\""])), "assist-term", &[]);
    assert_eq!(read_to_end(process.stdout).await, b"24 80\r\nassist-term\r\n");
}

#[tokio::test]
async fn pty_resize_reaches_a_running_shell() {
    let mut process = interactive_shell();
    let mut screen = Screen::new(process.stdout);
    process.stdin.write_all(b"stty size\n").await.expect("write");
    screen.expect("24 80").await;
    process.control.resize(100, 30).expect("resize");
    process.stdin.write_all(b"stty size\n").await.expect("write");
    screen.expect("30 100").await;
    process.stdin.write_all(b"exit\n").await.expect("write");
    screen.expect_eof().await;
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pty_ctrl_c_interrupts_the_foreground_command() {
    let mut process = interactive_shell();
    let mut screen = Screen::new(process.stdout);
    // The marker comes from the foreground job itself, after the shell gave it the
    // terminal, so Ctrl-C cannot reach the shell instead.
    process.stdin.write_all(b"sh -c 'echo $((6*7))-up; exec sleep 100'\n").await.expect("write");
    screen.expect("42-up").await;
    process.stdin.write_all(&[0x03]).await.expect("write");
    process.stdin.write_all(b"echo $((6*7))-back\n").await.expect("write");
    screen.expect("42-back").await;
    process.control.kill();
    wait(&process.control).await;
}

#[tokio::test]
async fn pty_kill_ends_a_command() {
    let process = pty(&["sleep", "100"]);
    process.control.kill();
    assert_eq!(wait(&process.control).await, ExitStatus { code: None, signal: Some("SIGHUP".into()) });
    assert_eq!(read_to_end(process.stdout).await, b"");
}

#[tokio::test]
async fn pty_kill_ends_a_shell_and_its_foreground_job() {
    let mut process = interactive_shell();
    let mut screen = Screen::new(process.stdout);
    process.stdin.write_all(b"sh -c 'echo $((6*7))-up; exec sleep 100'\n").await.expect("write");
    screen.expect("42-up").await;
    process.control.kill();
    assert!(wait(&process.control).await.signal.is_some());
    screen.expect_eof().await;
}

/// A process that ignores SIGHUP survives the hangup; the SIGKILL that follows reaches the
/// whole process group, not only the child (before, `sleep` here outlived the session).
#[tokio::test]
async fn pty_kill_reaches_the_process_group_of_the_child() {
    let process = pty(&["sh", "-c", "trap '' HUP; sleep 300 & echo \"bg=$!.\"; wait"]);
    let mut screen = Screen::new(process.stdout);
    screen.expect("bg=").await;
    let rest = String::from_utf8_lossy(&screen.seen[screen.pos..]).into_owned();
    let pid: u32 = rest.split('.').next().and_then(|p| p.trim().parse().ok()).expect("the job's pid");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    process.control.kill();
    assert_eq!(wait(&process.control).await.signal.as_deref(), Some("SIGKILL"));
    // The job was killed too; its zombie is reaped by init soon after.
    let gone = timeout(TIMEOUT, async {
        while std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| !stat.contains(") Z ")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the background job {pid} survived the kill");
}

#[tokio::test]
async fn pty_dropping_control_kills_the_child() {
    let process = pty(&["sleep", "100"]);
    drop(process.control);
    assert_eq!(read_to_end(process.stdout).await, b"");
}

#[tokio::test]
async fn pty_stdin_shutdown_sends_eot() {
    let mut process = pty(&["cat"]);
    process.stdin.write_all(b"hi\n").await.expect("write");
    process.stdin.shutdown().await.expect("shutdown");
    // "hi" twice: the terminal's echo, then cat's copy.
    assert_eq!(read_to_end(process.stdout).await, b"hi\r\nhi\r\n");
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pty_write_after_exit_fails() {
    let mut process = pty(&["true"]);
    wait(&process.control).await;
    let written = timeout(TIMEOUT, process.stdin.write_all(b"late\n")).await.expect("write hung");
    assert_eq!(written.expect_err("write after exit").kind(), std::io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn pty_default_program_is_a_login_shell() {
    let env = [("SHELL".to_string(), "/bin/sh".to_string())];
    let mut process = pty_with(None, "xterm", &env);
    let mut screen = Screen::new(process.stdout);
    process.stdin.write_all(b"echo \"$((6*7))$0\"\nexit\n").await.expect("write");
    screen.expect("42-sh").await;
    screen.expect_eof().await;
    assert!(wait(&process.control).await.success());
}

#[tokio::test]
async fn pty_output_ends_when_a_descendant_keeps_the_terminal() {
    // The background sleep ignores the hangup and keeps the terminal open after sh exits.
    let process = pty(&["sh", "-c", "trap '' HUP; sleep 100 & echo \"pid=$!.\""]);
    let out = String::from_utf8(read_to_end(process.stdout).await).expect("utf-8");
    assert!(wait(&process.control).await.success());
    let pid = out.split_once("pid=").and_then(|(_, rest)| rest.split_once('.')).map(|(pid, _)| pid);
    let pid = pid.unwrap_or_else(|| panic!("no pid in {out:?}"));
    let _ = std::process::Command::new("kill").args(["-KILL", pid]).status();
}
