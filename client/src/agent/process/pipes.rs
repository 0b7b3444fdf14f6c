//! Pipes mode: tokio's process support does the async I/O; a task owns the child to reap
//! it and to kill it on request.

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::debug;

use super::{Control, ExitStatus, Process, ProcessError};

pub(super) fn spawn(
    command: &[String],
    env: &[(String, String)],
    cwd: &Path,
) -> Result<Process, ProcessError> {
    let Some((program, args)) = command.split_first() else { return Err(ProcessError::EmptyCommand) };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            // The working directory was checked before, so this is the program.
            io::ErrorKind::NotFound => ProcessError::NotFound { program: program.clone() },
            _ => ProcessError::Spawn(format!("{program}: {e}")),
        })?;
    let missing = || ProcessError::Spawn("a standard stream of the child is not piped".into());
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;

    let (kill_tx, kill_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(None);
    let pid = child.id();
    tokio::spawn(supervise(child, kill_rx, status_tx));
    Ok(Process {
        stdin: Box::new(stdin),
        stdout: Box::new(stdout),
        stderr: Some(Box::new(stderr)),
        control: Control::new(pid, kill_tx, status_rx, None),
    })
}

async fn supervise(
    mut child: Child,
    mut kill: watch::Receiver<bool>,
    status: watch::Sender<Option<ExitStatus>>,
) {
    let mut killed = false;
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break exit.map(ExitStatus::from).unwrap_or_else(|e| {
                debug!(error = %e, "cannot wait for the child");
                ExitStatus::unknown()
            }),
            // A kill request, or every Control dropped.
            _ = kill.changed(), if !killed => {
                killed = true;
                if let Err(e) = child.start_kill() {
                    debug!(error = %e, "SIGKILL failed");
                }
            }
        }
    };
    status.send_replace(Some(exit));
}
