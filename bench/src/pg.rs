//! The cluster figures' PostgreSQL: Debian's `postgresql` server run by the benchmark
//! itself, its data in a temporary directory, listening on 127.0.0.1 at a free port and on
//! a private socket directory, with `trust` authentication for the role `assist`.
//!
//! - It keeps PostgreSQL's own durability defaults (`fsync` and `synchronous_commit` on:
//!   every commit waits for its WAL on disk), as a production relay's database would, so
//!   the figures show what the database costs. The tests' server (`assist-testpg`) turns
//!   `fsync` off to be quick, which would flatter the database here.
//! - As root it runs as the `postgres` user (the server refuses root); otherwise as the
//!   caller. It is stopped (`immediate`) and its directory removed when dropped.
//! - `postgresql` is installed with `apt-get` when missing and installing is allowed (the
//!   full run, as root); otherwise the cluster figures fail saying why.
//!
//! It tunes nothing else and serves nothing but loopback.

use crate::procs::{have, run_ok};
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Makes sure a PostgreSQL server is installed, installing Debian's `postgresql` if
/// allowed; returns its `bin` directory.
pub fn ensure_installed(allow_install: bool) -> Result<PathBuf> {
    if let Some(bin) = find_bin() {
        return Ok(bin);
    }
    if !allow_install {
        bail!("PostgreSQL is not installed (the full run installs Debian's postgresql)");
    }
    if !crate::ssh::is_root() {
        bail!("PostgreSQL is not installed and installing it needs root");
    }
    eprintln!("assist-bench: installing postgresql");
    let install = || {
        run_ok(
            "apt-get install postgresql",
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "postgresql"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        run_ok("apt-get update", Command::new("apt-get").arg("update"))?;
        install()?;
    }
    find_bin().ok_or_else(|| anyhow!("postgresql installed, but no initdb under /usr/lib/postgresql"))
}

fn find_bin() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .find(|b| b.join("initdb").is_file())
}

impl Postgres {
    /// `initdb` and `pg_ctl start` in a new temporary directory.
    pub fn start(bin: PathBuf) -> Result<Self> {
        let as_postgres = crate::ssh::is_root();
        if as_postgres && !have("runuser") {
            bail!("running PostgreSQL as root needs runuser (util-linux)");
        }
        // Not under the run's directory: that is root's alone, and the server's user
        // must reach its own files.
        let dir = tempfile::Builder::new().prefix("assist-bench-pg.").tempdir()?.keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Self { bin, dir, port, as_postgres };
        if as_postgres {
            run_ok("chown", Command::new("chown").arg("postgres:postgres").arg(&pg.dir))?;
        }
        let data = pg.data();
        pg.run("initdb", |c| {
            c.arg("-D").arg(&data).args(["-A", "trust", "-U", "assist", "--no-sync", "-E", "UTF8"]);
        })?;
        let options = format!("-k {} -p {} -c listen_addresses=127.0.0.1", pg.dir.display(), pg.port);
        let log = pg.dir.join("server.log");
        pg.run("pg_ctl start", |c| {
            c.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-o", &options, "start"]);
        })
        .with_context(|| format!("server log: {}", log.display()))?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server's programs (`initdb`, `pg_ctl`, `psql`) as its user.
    fn run(&self, what: &str, args: impl FnOnce(&mut Command)) -> Result<String> {
        let program = self.bin.join(what.split_whitespace().next().unwrap_or(what));
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        args(&mut cmd);
        run_ok(what, &mut cmd)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(format!("postgres://assist@127.0.0.1:{}/{name}", self.port))
    }

    /// Runs `sql` in database `db` with `psql`; its output, one value a line, trimmed.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = self.run("psql", |c| {
            c.args(["-h", "127.0.0.1", "-p", &port, "-U", "assist", "-d", db, "-Atc", sql]);
        })?;
        Ok(out.trim().to_owned())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl stop", |c| {
            c.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
