//! For tests only: a PostgreSQL server of the test binary's own, started on first use and
//! shared by the binary's tests, each of which takes a fresh database in it.
//!
//! - The server is Debian's `postgresql` (`/usr/lib/postgresql/N/bin`): `initdb` into a
//!   temporary directory and `pg_ctl start` as the `postgres` user (it refuses to run as
//!   root), listening on 127.0.0.1 at a free port and on a private socket directory, with
//!   `trust` authentication for the role `assist` and `fsync` off.
//! - It is stopped, and its directory removed, when the test binary exits however it
//!   exits: a watcher process waits for the end of a pipe that only this process holds.
//! - Databases are never dropped: they go with the server.
//!
//! It is not a harness for anything else, and nothing here runs outside tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The running server.
pub struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Held until the process exits: its end tells the watcher to stop the server.
    _watch: Mutex<ChildStdin>,
}

/// A fresh database in the server.
#[derive(Debug)]
pub struct Database {
    name: String,
    url: String,
}

impl Database {
    /// `postgres://assist@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// This test binary's server, started on the first call. Panics, saying why, if it
/// cannot start (a test that needs it cannot run without it).
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start().unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}")))
}

/// A new, empty database in this test binary's server.
pub fn database() -> Database {
    server().create_database().unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"))
}

impl Server {
    fn start() -> Result<Self, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server (Debian postgresql) installed: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").is_file())
            .ok_or("no PostgreSQL server (Debian postgresql) installed")?;
        let dir = tempfile::Builder::new().prefix("assist-pg").tempdir().map_err(|e| e.to_string())?.keep();
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        let port = free_port()?;
        let data = dir.join("data");
        let data_arg = data.as_os_str();
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D".as_ref(),
                data_arg,
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "assist".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!("-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", dir.display());
        let log = dir.join("server.log");
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D".as_ref(),
                data_arg,
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )?;
        // `cat` returns when this process's end of its stdin closes, i.e. when this
        // process has exited; then the server is stopped and its files removed.
        let mut watcher = Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c"])
            .arg(r#"cat >/dev/null; "$0" -D "$1" -m immediate stop; rm -rf "$2""#)
            .arg(bin.join("pg_ctl"))
            .arg(&data)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("runuser: {e}"))?;
        let watch = watcher.stdin.take().ok_or("the watcher has no stdin")?;
        Ok(Self { bin, dir, port, _watch: Mutex::new(watch) })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `psql` as `assist` against database `db`; returns its output (one value a
    /// line, unaligned).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        run(Command::new(self.bin.join("psql")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "assist",
            "-d",
            db,
            "-Atc",
            sql,
        ]))
    }

    /// Creates a new, empty database.
    pub fn create_database(&self) -> Result<Database, String> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        // One at a time: CREATE DATABASE copies template1 and can refuse while another
        // copy is being made.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        let url = format!("postgres://assist@127.0.0.1:{}/{name}", self.port);
        Ok(Database { name, url })
    }
}

fn as_postgres(bin: &Path, program: &str, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    run(Command::new("runuser").args(["-u", "postgres", "--"]).arg(bin.join(program)).args(args))
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{:?}", cmd.get_program());
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    drop(l);
    Ok(port)
}
