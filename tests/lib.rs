//! Test harness for end-to-end tests: the real `assist-relay`, `assist-agent` and `assist`
//! binaries, on loopback with port 0, each in its own temporary directory, killed on drop.
//!
//! The binaries must be built first (`cargo build --bins`; the test script does it).

pub mod browser;
pub mod files_support;
pub mod rogue;

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for; a loaded 2-core CI machine is slow.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it holds, failing after [`WAIT`]: for state with no event to wait on
/// (a process, an audit row, a file's size).
pub fn wait_until(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_for_some(what, || Ok(f()?.then_some(())))
}

/// Polls `f` until it gives a value, failing after [`WAIT`]: [`wait_until`] for checks
/// that find something (a page's element, its text).
pub fn wait_for_some<T>(what: &str, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Path of a workspace binary next to the test executable (`target/debug/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` before the tests", path.display());
    path
}

/// Lines of a child's output, collected on a thread.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn spawn(read: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(read).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// The lines said so far, without waiting (for a failure's report).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(_) => bail!("no line containing {needle:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let stdout = Lines::spawn(child.stdout.take().expect("stdout"));
        let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
        let stdin = child.stdin.take();
        Ok(Self { child, stdin, stdout, stderr })
    }

    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the process to exit, up to [`WAIT`].
    pub fn wait(&mut self) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("process did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted for the test (a small disk that fills up), unmounted on drop.
pub struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `256k`); needs root.
    pub fn mount(size: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A relay process with its own data directory.
pub struct TestRelay {
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub addr: String,
    pub fingerprint: String,
    pub admin_password: String,
    /// Environment of the relay and of its administration commands (an object store's
    /// `AWS_*` settings).
    pub env: Vec<(String, String)>,
}

impl TestRelay {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a relay on 127.0.0.1:0 with extra `serve` arguments.
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir, "127.0.0.1:0", extra)
    }

    /// Stops this relay and starts a new one on the same data directory and address, as
    /// after a crash (the old process is killed, not shut down).
    pub fn restart(self) -> Result<Self> {
        let TestRelay { dir, proc, addr, .. } = self;
        drop(proc);
        Self::start_in(dir, &addr, &[])
    }

    pub fn start_in(dir: tempfile::TempDir, listen: &str, extra: &[&str]) -> Result<Self> {
        Self::start_with_env(dir, listen, extra, vec![])
    }

    /// Like [`TestRelay::start_in`], with `env` for the relay and its admin commands.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        listen: &str,
        extra: &[&str],
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut cmd = Command::new(bin("assist-relay"));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--data-dir").arg(dir.path().join("data")).args(["serve", "--listen", listen]);
        // Parallel tests never share the console's default port.
        if !extra.iter().any(|a| *a == "--console" || *a == "--no-console") {
            cmd.args(["--console", "127.0.0.1:0"]);
        }
        cmd.args(extra);
        cmd.env("RUST_LOG", "info,assist_relay=debug");
        let mut proc = Proc::spawn(cmd)?;
        let ready = proc.stdout.wait_for("listening on")?;
        // "assist-relay listening on ADDR ca SHA256:HEX"
        let words: Vec<&str> = ready.split_whitespace().collect();
        let addr = words.get(3).ok_or_else(|| anyhow!("bad ready line {ready}"))?.to_string();
        let fingerprint = words.get(5).ok_or_else(|| anyhow!("bad ready line {ready}"))?.to_string();
        let admin_password = proc
            .stdout
            .seen
            .iter()
            .find_map(|l| l.trim().strip_prefix("admin password: ").map(str::to_owned))
            .unwrap_or_default();
        Ok(Self { dir, proc, addr, fingerprint, admin_password, env })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The console's URL (`https://localhost:PORT`) and the SHA-256 of its key's
    /// SubjectPublicKeyInfo (base64), from the relay's start-up line
    /// `assist-relay console on https://ADDR spki BASE64`.
    pub fn console(&self) -> Result<(String, String)> {
        let line = self
            .proc
            .stdout
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("assist-relay console on https://"))
            .ok_or_else(|| anyhow!("the relay printed no console line"))?;
        let mut words = line.split_whitespace();
        let addr: std::net::SocketAddr = words.next().ok_or_else(|| anyhow!("no address"))?.parse()?;
        let spki = match (words.next(), words.next()) {
            (Some("spki"), Some(spki)) => spki.to_owned(),
            _ => bail!("no spki in {line}"),
        };
        Ok((format!("https://localhost:{}", addr.port()), spki))
    }

    /// Runs an administration command against the data directory; fails unless it exits 0.
    pub fn admin(&self, args: &[&str]) -> Result<String> {
        self.admin_with_stdin(args, "")
    }

    pub fn admin_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = run_with_stdin(
            Command::new(bin("assist-relay"))
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .arg("--data-dir")
                .arg(self.data_dir())
                .args(args),
            stdin,
        )?;
        if !out.status.success() {
            bail!("assist-relay {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Adds a user with the password `pw-NAME-123`.
    pub fn add_user(&self, name: &str, org: &str, role: &str) -> Result<()> {
        self.admin_with_stdin(
            &["user", "add", name, "--org", org, "--role", role, "--password-stdin"],
            &format!("pw-{name}-123\n"),
        )?;
        Ok(())
    }

    /// The usual world: vendor supports acme; alice engineers at vendor, bob approves at acme.
    pub fn standard_world(&self) -> Result<()> {
        self.admin(&["org", "add", "vendor"])?;
        self.admin(&["org", "add", "acme", "--supported-by", "vendor"])?;
        self.add_user("alice", "vendor", "engineer")?;
        self.add_user("bob", "acme", "approver")?;
        Ok(())
    }

    pub fn join_token(&self, org: &str) -> Result<String> {
        Ok(self.admin(&["token", "create", "--org", org])?.trim().to_owned())
    }

    /// Enrolls an agent in `org` and starts `assist-agent run --consent MODE`.
    pub fn agent(&self, name: &str, org: &str, consent: &str) -> Result<TestAgent> {
        self.agent_with(name, org, consent, &[])
    }

    /// [`TestRelay::agent`] with more arguments for `assist-agent run` (`--display :N`).
    pub fn agent_with(&self, name: &str, org: &str, consent: &str, extra: &[&str]) -> Result<TestAgent> {
        let mut agent = self.enroll(name, org, extra)?;
        agent.start(consent)?;
        Ok(agent)
    }

    /// Enrolls an agent in `org` with a join token of its own, against this relay; not
    /// started. `extra`: more arguments for its `assist-agent run`.
    pub fn enroll(&self, name: &str, org: &str, extra: &[&str]) -> Result<TestAgent> {
        self.enroller().enroll(name, org, extra)
    }

    /// What enrolling agents with this relay takes, for other threads.
    pub fn enroller(&self) -> Enroller {
        Enroller {
            data_dir: self.data_dir(),
            env: self.env.clone(),
            addr: self.addr.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// An engineer CLI with its own config directory, logged in.
    pub fn login(&self, user: &str) -> Result<Cli> {
        let cli = Cli { dir: tempfile::tempdir()?, relay: self.addr.clone() };
        let out = cli.run_stdin(
            &[
                "login",
                "--relay",
                &self.addr,
                "--user",
                user,
                "--password-stdin",
                "--ca-fingerprint",
                &self.fingerprint,
            ],
            &format!("pw-{user}-123\n"),
        )?;
        if !out.status.success() {
            bail!("login failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(cli)
    }
}

/// How to enroll agents with a relay (its data directory for join tokens, its address and
/// CA): unlike [`TestRelay`], it may go to other threads, so many agents enroll at once.
#[derive(Clone, Debug)]
pub struct Enroller {
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    addr: String,
    fingerprint: String,
}

impl Enroller {
    /// Enrolls an agent in `org` with a join token of its own (`assist-relay token create`,
    /// then `assist-agent enroll`); not started. `extra`: more arguments for its
    /// `assist-agent run`.
    pub fn enroll(&self, name: &str, org: &str, extra: &[&str]) -> Result<TestAgent> {
        let out = run_with_stdin(
            Command::new(bin("assist-relay"))
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args(["token", "create", "--org", org]),
            "",
        )?;
        if !out.status.success() {
            bail!("token create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?.trim().to_owned();
        let dir = tempfile::tempdir()?;
        let out = Command::new(bin("assist-agent"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["enroll", "--relay", &self.addr, "--token", &token])
            .args(["--ca-fingerprint", &self.fingerprint, "--name", name])
            .output()?;
        if !out.status.success() {
            bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(TestAgent {
            dir,
            proc: None,
            name: name.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// Enrolls one agent per `(relay, name)` of `jobs` in `org`, `parallel` enrollments at a
/// time; none started. The agents come back in the order of `jobs`.
pub fn enroll_many(jobs: &[(Enroller, String)], org: &str, parallel: usize) -> Result<Vec<TestAgent>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<TestAgent>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..parallel.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((relay, name)) = jobs.get(i) else { return Ok(()) };
                        let agent = relay.enroll(name, org, &[])?;
                        done.lock().expect("agents lock")[i] = Some(agent);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow!("an enrolling thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.into_inner().expect("agents lock").into_iter().map(|a| a.expect("every job ran")).collect())
}

/// Starts every agent in `consent` mode at once, then waits until each is connected to a
/// relay.
pub fn run_all(agents: &mut [TestAgent], consent: &str) -> Result<()> {
    for agent in agents.iter_mut() {
        agent.spawn(consent)?;
    }
    for agent in agents.iter_mut() {
        agent.proc().stderr.wait_for("assist-agent: connected to")?;
    }
    Ok(())
}

pub struct TestAgent {
    pub dir: tempfile::TempDir,
    pub proc: Option<Proc>,
    pub name: String,
    /// More arguments for `assist-agent run`.
    pub extra: Vec<String>,
}

impl TestAgent {
    /// Starts `assist-agent run` and waits until it is connected.
    pub fn start(&mut self, consent: &str) -> Result<()> {
        self.spawn(consent)?;
        self.proc().stderr.wait_for("assist-agent: connected to")?;
        Ok(())
    }

    /// Starts `assist-agent run` without waiting for anything.
    pub fn spawn(&mut self, consent: &str) -> Result<()> {
        let mut cmd = Command::new(bin("assist-agent"));
        cmd.arg("--data-dir").arg(self.dir.path()).args(["run", "--consent", consent]).args(&self.extra);
        self.proc = Some(Proc::spawn(cmd)?);
        Ok(())
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("agent running")
    }

    pub fn kill(&mut self) {
        self.proc = None;
    }
}

/// The `assist` CLI with its own configuration directory.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub relay: String,
}

impl Cli {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("assist"));
        cmd.env("ASSIST_CONFIG_DIR", self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_stdin(args, "")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        run_with_stdin(self.command().args(args), stdin)
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!("assist {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Starts a long-running command (a session) in the background.
    pub fn spawn(&self, args: &[&str]) -> Result<Proc> {
        let mut cmd = self.command();
        cmd.args(args);
        Proc::spawn(cmd)
    }

    /// Waits until a request from `engineer` is pending and returns its session id.
    pub fn pending_request(&self) -> Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.ok(&["requests", "--json"])?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            if let Some(id) = v.as_array().and_then(|a| a.first()).and_then(|s| s["id"].as_str()) {
                return Ok(id.to_owned());
            }
            if Instant::now() > deadline {
                bail!("no pending request appeared");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs a command to completion with `stdin` as its input, bounded by [`WAIT`].
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Result<Output> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_owned();
    std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT).map_err(|_| anyhow!("command {cmd:?} did not finish"))?.map_err(Into::into)
}

/// An S3 API on a loopback port: moto's server (`moto[server]`, which `scripts/test`
/// installs and names in `ASSIST_MOTO_SERVER`; else `moto_server` on the PATH), killed when
/// dropped. Fails, never skips, when it is missing.
pub struct S3Server {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl S3Server {
    pub fn start() -> Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let program = std::env::var_os("ASSIST_MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow!("cannot start {program:?} ({e}); scripts/test installs moto[server] and sets ASSIST_MOTO_SERVER")
            })?;
        let server = S3Server { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("moto_server did not listen on {addr} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Creates a bucket (moto accepts an unsigned request).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr)?;
        let addr = self.addr;
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.lines().next().unwrap_or_default();
        if !status.contains(" 200") {
            bail!("creating bucket {bucket}: {status}");
        }
        Ok(())
    }

    /// The `AWS_*` settings that point object_store's S3 client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", format!("http://{}", self.addr)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "assist-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "assist-test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
