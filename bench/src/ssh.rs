//! The OpenSSH baselines: two `sshd` on 127.0.0.1 high ports (a target and a jump host)
//! with throwaway host and user keys, and the `ssh` commands that reach the target
//! directly or through the jump host (`-J`).
//!
//! - `openssh-server` is installed with `apt-get` when `sshd` is missing and installing
//!   is allowed (the full run); otherwise the baselines are skipped, with the reason.
//! - Both daemons run as root with a config of their own in the run's directory: no PAM,
//!   keys only, the distribution's SFTP server (for `scp`), and nothing read from or
//!   written to `/etc/ssh` or `~/.ssh`. Only `/run/sshd`, the privilege separation
//!   directory `sshd` insists on, is created if missing.
//! - Clients use a temporary `ssh_config` (`-F`), which `-J` passes on to the jump.
//!
//! It does not tune ssh: ciphers and everything else are OpenSSH's defaults, as engineers
//! use them.

use crate::procs::{Proc, have, run_ok};
use anyhow::{Result, anyhow, bail};
use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// Two running daemons and the client configuration that reaches them.
pub struct Ssh {
    config: PathBuf,
    target: Proc,
    jump: Proc,
}

/// Makes sure `sshd` exists, installing `openssh-server` if allowed. `Err` says why the
/// baselines cannot run.
pub fn ensure_installed(allow_install: bool) -> Result<()> {
    if have(SSHD) && have("ssh") && have("ssh-keygen") {
        return Ok(());
    }
    if !allow_install {
        bail!("sshd is not installed (the full run installs openssh-server)");
    }
    if !is_root() {
        bail!("sshd is not installed and installing it needs root");
    }
    eprintln!("assist-bench: installing openssh-server");
    let install = || {
        run_ok(
            "apt-get install openssh-server",
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "openssh-server", "openssh-client"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        run_ok("apt-get update", Command::new("apt-get").arg("update"))?;
        install()?;
    }
    if !have(SSHD) {
        bail!("openssh-server installed, but {SSHD} is still missing");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    run_ok("id -u", Command::new("id").arg("-u")).map(|s| s.trim() == "0").unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn keygen(path: &Path) -> Result<()> {
    run_ok(
        "ssh-keygen",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "assist-bench", "-f"])
            .arg(path),
    )?;
    Ok(())
}

/// The SFTP server `scp` talks to: the distribution's, as its stock `sshd_config` names
/// it, else sshd's built-in one.
fn sftp_server() -> &'static str {
    ["/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("internal-sftp")
}

fn start_sshd(dir: &Path, name: &str, authorized: &Path) -> Result<(Proc, u16)> {
    let host_key = dir.join(format!("{name}_host_ed25519"));
    keygen(&host_key)?;
    let port = free_port()?;
    let config = dir.join(format!("{name}_sshd_config"));
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\nUsePAM no\n\
             AuthorizedKeysFile {auth}\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\nPrintLastLog no\nUseDNS no\n\
             LogLevel INFO\nSubsystem sftp {sftp}\n",
            host = host_key.display(),
            auth = authorized.display(),
            sftp = sftp_server(),
        ),
    )?;
    std::fs::create_dir_all("/run/sshd")?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-f").arg(&config).args(["-D", "-e"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}_sshd.log")))?);
    let mut proc = Proc::spawn(&format!("sshd ({name})"), &mut cmd)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = proc.child.try_wait()? {
            bail!(
                "sshd ({name}) exited with {status}; see {}",
                dir.join(format!("{name}_sshd.log")).display()
            );
        }
        if Instant::now() > deadline {
            bail!("sshd ({name}) did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, port))
}

impl Ssh {
    /// Starts both daemons in `dir` and checks that `ssh target true` works both ways.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let user_key = dir.join("id_ed25519");
        keygen(&user_key)?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("id_ed25519.pub"), &authorized)?;
        let (target, target_port) = start_sshd(dir, "target", &authorized)?;
        let (jump, jump_port) = start_sshd(dir, "jump", &authorized)?;
        let config = dir.join("ssh_config");
        let host = |alias: &str, port: u16| {
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {key}\n  \
                 IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
                 BatchMode yes\n  LogLevel ERROR\n  ControlMaster no\n  ControlPath none\n",
                key = user_key.display()
            )
        };
        std::fs::write(&config, format!("{}{}", host("target", target_port), host("jump", jump_port)))?;
        let ssh = Self { config, target, jump };
        for jump in [false, true] {
            run_ok("ssh check", &mut ssh.command(jump, &[], &["true"]))
                .map_err(|e| anyhow!("ssh to the benchmark sshd fails: {e}"))?;
        }
        Ok(ssh)
    }

    /// Process ids of the target's and the jump host's listening `sshd` (each session's
    /// `sshd` processes are their children).
    pub fn daemon_pids(&self) -> [u32; 2] {
        [self.target.pid(), self.jump.pid()]
    }

    /// `ssh -F CONFIG [-J jump] OPTS… target REMOTE…`.
    pub fn command(&self, via_jump: bool, opts: &[&str], remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.config);
        if via_jump {
            cmd.args(["-J", "jump"]);
        }
        cmd.args(opts).arg("target").args(remote);
        cmd
    }

    /// `scp -q -F CONFIG [-J jump] ARGS…` (hosts in ARGS are named `target`).
    pub fn scp(&self, via_jump: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new("scp");
        cmd.arg("-q").arg("-F").arg(&self.config);
        if via_jump {
            cmd.args(["-J", "jump"]);
        }
        cmd.args(args);
        cmd
    }

    /// The same as [`Ssh::command`], as a program and its arguments (for a PTY).
    pub fn argv(&self, via_jump: bool, opts: &[&str], remote: &[&str]) -> Vec<String> {
        let cmd = self.command(via_jump, opts, remote);
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }
}
