//! The processes that serve approved channels on the agent: a shell or command in a
//! pseudo-terminal, or a command on plain pipes (like `ssh host cmd`).
//!
//! [`spawn`] starts the child and returns its standard streams as async byte streams for
//! the channel code to splice onto QUIC streams, plus a [`Control`] to resize, kill and
//! wait for it.
//!
//! - **Bounded.** Nothing here buffers more than a few chunks per direction: a child that
//!   stops reading its input stalls writes to `stdin`, and a reader that stops reading
//!   `stdout` stalls the child. Once the child has exited, writes to `stdin` fail (for
//!   pipes, once nothing else holds the pipe: a descendant, or for an instant a process
//!   that another spawn in the agent forked and has not yet exec'd).
//! - **PTY** ([`Spec::Pty`]): the child is a session leader with the terminal as its
//!   controlling tty, so job control and Ctrl-C (byte 0x03) work as in a local terminal.
//!   `stdout` carries everything the child wrote before it exited. It ends when every
//!   process has closed the terminal or, when a descendant still holds it after the child
//!   exited (`sleep 1000 & disown`), [`TTY_LINGER`] after the last output, as sshd closes
//!   the terminal when the shell exits. Output is drained even after `stdout` is dropped,
//!   and discarded. Shutting down or dropping `stdin` sends one EOT (Ctrl-D, 0x04) and
//!   never a newline, so a half-typed command line is not run.
//! - **Pipes** ([`Spec::Pipes`]): argv goes to `execve` as is, never through a shell;
//!   `stdout` and `stderr` stay separate; dropping `stdin` closes the child's stdin.
//! - **Lifetime.** [`Control::kill`] ends the child: for a PTY, SIGHUP (what a closed
//!   terminal sends; a shell passes it on to its jobs) then SIGKILL after [`KILL_GRACE`],
//!   both to the child's process group;
//!   for pipes, SIGKILL. Dropping every clone of the `Control` kills the child too.
//! - **Environment.** The child inherits the agent's environment with `env` applied on
//!   top; a PTY child also gets `TERM` from the request. Without `cwd` it starts in `$HOME`,
//!   like an ssh session.
//!
//! Deliberately not here: deciding whether a process may run (the grant check happens in
//! the caller, before [`spawn`]), recording or auditing the streams, and anything about
//! QUIC. Everything runs as the agent's own user. Unix only, for now.
//!
//! Known limits: a PTY kill signals the child's process group (the child and what it
//! started without job control). An interactive shell's jobs live in groups of their own:
//! the shell passes SIGHUP on to them, but a job that ignores SIGHUP and keeps the terminal
//! open survives (its output is dropped after [`TTY_LINGER`]). A pipes child's own children
//! are not killed.

mod pipes;
mod pty;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assist_proto::msg::PtyRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use pty::{KILL_GRACE, TTY_LINGER};

/// What to run for a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A login shell (the user's `$SHELL`, else the shell in the password database, else
    /// `/bin/sh`) or `command` in a PTY of the given size, with `TERM` from `pty.term`
    /// (`dumb` when empty).
    Pty { pty: PtyRequest, command: Option<Vec<String>> },
    /// `command` with piped stdin, stdout and stderr and no PTY. The arguments are passed
    /// as argv, never through a shell.
    Pipes { command: Vec<String> },
}

/// How the child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when the child exited on its own.
    pub code: Option<i32>,
    /// The signal's name (`"SIGKILL"`), when a signal killed the child.
    pub signal: Option<String>,
}

impl ExitStatus {
    /// Neither code nor signal: the status could not be collected.
    fn unknown() -> Self {
        ExitStatus { code: None, signal: None }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status).map(signal_name);
        #[cfg(not(unix))]
        let signal = None;
        ExitStatus { code: status.code(), signal }
    }
}

/// A running child and its streams.
pub struct Process {
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    /// For a PTY, the merged terminal output.
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// `None` for a PTY, where stderr is part of the terminal output.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub control: Control,
}

/// Resizes, kills and waits for a child; clones share it, so `kill` and `resize` can
/// come from other tasks than `wait`. Dropping the last clone kills the child.
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlInner>,
}

struct ControlInner {
    pid: Option<u32>,
    kill: watch::Sender<bool>,
    status: watch::Receiver<Option<ExitStatus>>,
    /// The terminal's master, for resizing.
    pty: Option<Arc<OwnedFd>>,
}

impl Control {
    fn new(
        pid: Option<u32>,
        kill: watch::Sender<bool>,
        status: watch::Receiver<Option<ExitStatus>>,
        pty: Option<Arc<OwnedFd>>,
    ) -> Self {
        Control { inner: Arc::new(ControlInner { pid, kill, status, pty }) }
    }

    /// A control for work that is not a child process (a file transfer): [`Control::kill`]
    /// turns the returned receiver true; [`Control::wait`] returns at once.
    pub fn for_task() -> (Control, watch::Receiver<bool>) {
        let (kill, rx) = watch::channel(false);
        let (_, status) = watch::channel(None);
        (Control::new(None, kill, status, None), rx)
    }

    /// The child's process id, for logs.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid
    }

    /// Changes the terminal size (the child gets SIGWINCH). `Ok` and nothing else for pipes.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        match &self.inner.pty {
            Some(master) => pty::resize(master, cols, rows),
            None => Ok(()),
        }
    }

    /// Ends the child; returns at once, and calling it again does nothing more.
    pub fn kill(&self) {
        self.inner.kill.send_replace(true);
    }

    /// Completes when the child has exited, however many times it is awaited. For a PTY,
    /// this can come before `stdout` has delivered the last output: read `stdout` to its
    /// end before reporting the exit.
    pub async fn wait(&self) -> ExitStatus {
        let mut status = self.inner.status.clone();
        // Only a runtime shutting down drops the sender without a status.
        let exited = status.wait_for(Option::is_some).await.map(|status| status.clone());
        exited.ok().flatten().unwrap_or_else(ExitStatus::unknown)
    }
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no command given")]
    EmptyCommand,
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("cannot use {} as the working directory: {reason}", path.display())]
    Cwd { path: PathBuf, reason: String },
    #[error("cannot start the process: {0}")]
    Spawn(String),
    #[error("cannot set up the terminal: {0}")]
    Pty(String),
}

/// Starts `spec` with `env` on top of the agent's environment, in `cwd` (default `$HOME`).
///
/// Must be called within a Tokio runtime with I/O, time and signal drivers (panics
/// otherwise, like `tokio::spawn`). The caller has already checked that a grant covers it.
pub fn spawn(spec: Spec, env: &[(String, String)], cwd: Option<&Path>) -> Result<Process, ProcessError> {
    let cwd = working_dir(env, cwd)?;
    match spec {
        Spec::Pty { pty, command } => {
            if let Some(command) = &command {
                check_program(command, env, &cwd)?;
            }
            pty::spawn(pty, command, env, &cwd)
        }
        Spec::Pipes { command } => {
            check_program(&command, env, &cwd)?;
            pipes::spawn(&command, env, &cwd)
        }
    }
}

/// The variable as the child will see it.
fn child_var(env: &[(String, String)], key: &str) -> Option<OsString> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.into()).or_else(|| std::env::var_os(key))
}

fn working_dir(env: &[(String, String)], cwd: Option<&Path>) -> Result<PathBuf, ProcessError> {
    let Some(cwd) = cwd else {
        let home = child_var(env, "HOME").map(PathBuf::from).filter(|home| home.is_dir());
        return Ok(home.unwrap_or_else(|| PathBuf::from("/")));
    };
    // Checked here because the spawners would misreport it: std (under both) reports
    // ENOENT as if the program were missing.
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(cwd.to_path_buf()),
        Ok(_) => Err(ProcessError::Cwd { path: cwd.to_path_buf(), reason: "not a directory".into() }),
        Err(e) => Err(ProcessError::Cwd { path: cwd.to_path_buf(), reason: e.to_string() }),
    }
}

/// Rejects a command whose program exists nowhere, so that the engineer reads "command
/// not found" rather than an errno from deep inside a spawner.
fn check_program(command: &[String], env: &[(String, String)], cwd: &Path) -> Result<(), ProcessError> {
    let program = command.first().ok_or(ProcessError::EmptyCommand)?;
    let found = if program.contains('/') {
        cwd.join(program).is_file()
    } else {
        // Without PATH the spawners fall back to defaults of their own: let them decide.
        let Some(path) = child_var(env, "PATH") else { return Ok(()) };
        std::env::split_paths(&path).any(|dir| cwd.join(dir).join(program).is_file())
    };
    if found { Ok(()) } else { Err(ProcessError::NotFound { program: program.clone() }) }
}

#[cfg(unix)]
fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return linux_signal_name(signal).map_or_else(|| format!("signal {signal}"), str::to_owned),
    };
    name.to_owned()
}

/// The numbers that differ between Unixes, as Linux numbers them outside MIPS and SPARC.
#[cfg(unix)]
fn linux_signal_name(signal: i32) -> Option<&'static str> {
    if !cfg!(target_os = "linux")
        || cfg!(any(
            target_arch = "mips",
            target_arch = "mips64",
            target_arch = "sparc",
            target_arch = "sparc64"
        ))
    {
        return None;
    }
    Some(match signal {
        7 => "SIGBUS",
        10 => "SIGUSR1",
        12 => "SIGUSR2",
        16 => "SIGSTKFLT",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        _ => return None,
    })
}
