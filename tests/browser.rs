//! A real headless Chromium for the console's end-to-end tests, driven over WebDriver
//! with fantoccini (plain HTTP to chromedriver on loopback: no TLS stack of its own).
//!
//! - One chromedriver per test binary, started on first use and stopped when the binary
//!   exits: it runs under a small `sh` watchdog that kills its whole process group (and
//!   the Chromium processes it started) once our end of its stdin closes, which the
//!   kernel does when the test process exits however it exits.
//! - The browser trusts each test relay's CA the way a customer's would: chromedriver (and
//!   so every Chromium it starts) runs with `HOME` in a temporary directory whose NSS
//!   database (`~/.pki/nssdb`, made with `certutil` from libnss3-tools) gets the relay's
//!   `ca.pem` as a trusted authority before the test's Chromium starts. No certificate
//!   error is ignored.
//! - One Chromium per test ([`Browser::open`]), since Chromium reads the NSS database when
//!   it starts: a fresh `--user-data-dir`, headless, `--no-sandbox` (tests run as root), no
//!   background networking, component updates, sync or GPU.
//! - [`Browser::screenshot`] saves a PNG under `<target>/artefacts/console/`.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver` if missing.

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The shared chromedriver: its URL, the NSS database its browsers read, and the
/// watchdog whose stdin we hold open.
struct Driver {
    url: String,
    nssdb: String,
    /// Serialises `certutil` writes to the shared database.
    trust: Mutex<()>,
    _watchdog: Mutex<Child>,
}

fn driver() -> Result<&'static Driver> {
    static DRIVER: OnceLock<std::result::Result<Driver, String>> = OnceLock::new();
    DRIVER.get_or_init(|| start_driver().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow!("{e}"))
}

fn start_driver() -> Result<Driver> {
    let program = std::env::var("ASSIST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    // chromedriver prints its port only after binding the one it was given: take a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // `setsid` makes chromedriver a process-group leader, so the whole group (Chromium
    // included) goes when the watchdog's `read` sees our end of the pipe close.
    // The browsers' HOME, with an empty NSS database; removed by the watchdog at the end.
    let home = tempfile::Builder::new().prefix("assist-chromium-").tempdir()?.keep();
    let nssdb = format!("sql:{}", home.join(".pki/nssdb").display());
    std::fs::create_dir_all(home.join(".pki/nssdb"))?;
    let out = Command::new("certutil")
        .args(["-N", "-d", &nssdb, "--empty-password"])
        .output()
        .with_context(|| "cannot run certutil (Debian package libnss3-tools; scripts/test installs it)")?;
    anyhow::ensure!(out.status.success(), "certutil -N: {}", String::from_utf8_lossy(&out.stderr));
    let script = r#"setsid "$0" --port="$1" --allowed-ips=127.0.0.1 & pid=$!; read -r _; kill -TERM -"$pid" 2>/dev/null; sleep 1; kill -KILL -"$pid" 2>/dev/null; rm -rf "$2""#;
    let mut child = Command::new("sh")
        .args(["-c", script, &program, &port.to_string(), &home.display().to_string()])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(
            || "cannot start chromedriver (Debian package chromium-driver; scripts/test installs it)",
        )?;
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + crate::WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("started successfully") => break,
            Ok(_) => continue,
            Err(_) => bail!("{program} did not start on port {port}"),
        }
    }
    Ok(Driver {
        url: format!("http://127.0.0.1:{port}"),
        nssdb,
        trust: Mutex::new(()),
        _watchdog: Mutex::new(child),
    })
}

/// Where screenshots go: `<target>/artefacts/console/`.
pub fn artefacts() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/e2e-HASH
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).expect("target dir");
    target.join("artefacts").join("console")
}

/// A Chromium session.
pub struct Browser {
    pub client: Client,
    pub rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Trusts the CA certificate in `ca_pem` (a relay's `ca.pem`) as an authority for web
    /// sites, then opens Chromium with a fresh profile.
    pub fn open(ca_pem: &Path) -> Result<Self> {
        let driver = driver()?;
        {
            let _one = driver.trust.lock().unwrap_or_else(|e| e.into_inner());
            let name = format!("assist-test-{}", std::process::id())
                + &ca_pem.display().to_string().replace('/', "-");
            let out = Command::new("certutil")
                .args(["-A", "-d", &driver.nssdb, "-n", &name, "-t", "C,,", "-i"])
                .arg(ca_pem)
                .output()?;
            anyhow::ensure!(out.status.success(), "certutil -A: {}", String::from_utf8_lossy(&out.stderr));
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let profile = tempfile::tempdir()?;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": args, "binary": std::env::var("ASSIST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()) }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt
            .block_on(ClientBuilder::new(connector).capabilities(caps).connect(&driver.url))
            .context("cannot open a Chromium session")?;
        Ok(Self { client, rt, _profile: profile })
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        Ok(self.rt.block_on(self.client.goto(url))?)
    }

    /// Waits (up to [`crate::WAIT`]) for an element matching the CSS selector to exist and
    /// be displayed.
    pub fn wait_css(&self, css: &str) -> Result<fantoccini::elements::Element> {
        let found = crate::wait_for_some(&format!("{css} to appear"), || {
            Ok(self.rt.block_on(async {
                let e = self.client.find(Locator::Css(css)).await.ok()?;
                e.is_displayed().await.ok()?.then_some(e)
            }))
        });
        found.map_err(|e| {
            let shot = self.screenshot("timeout").ok();
            e.context(format!("screenshot: {shot:?}"))
        })
    }

    /// Waits for the element's text to contain `needle`; returns the text.
    pub fn wait_text(&self, css: &str, needle: &str) -> Result<String> {
        crate::wait_for_some(&format!("{css} to say {needle:?}"), || {
            let text = self.rt.block_on(async {
                let e = self.client.find(Locator::Css(css)).await.ok()?;
                e.text().await.ok()
            });
            Ok(text.filter(|t| t.contains(needle)))
        })
    }

    /// Types into the element (after clearing it).
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.wait_css(css)?;
        self.rt.block_on(async {
            e.clear().await?;
            e.send_keys(text).await
        })?;
        Ok(())
    }

    /// Clicks the element. A live page may draw its list again between finding the element
    /// and clicking it; the click then reaches nothing (a stale element) and is tried again
    /// on the element found anew.
    pub fn click(&self, css: &str) -> Result<()> {
        crate::wait_for_some(&format!("{css} to be clicked"), || {
            let e = self.wait_css(css)?;
            match self.rt.block_on(e.click()) {
                Ok(()) => Ok(Some(())),
                Err(err) if err.is_stale_element_reference() => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    pub fn text(&self, css: &str) -> Result<String> {
        let e = self.wait_css(css)?;
        Ok(self.rt.block_on(e.text())?)
    }

    /// Sets the window's size (CSS pixels, roughly: the outer window in headless mode).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        Ok(self.rt.block_on(self.client.set_window_size(width, height))?)
    }

    /// Saves a PNG of the page as `<artefacts>/NAME.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.rt.block_on(self.client.screenshot())?;
        let dir = artefacts();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
    }
}

/// The TOTP code for a base32 secret at `unix_secs` (what an authenticator app shows).
pub fn totp_code(secret_b32: &str, unix_secs: u64) -> Result<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32.trim()).map_err(|e| anyhow!("secret: {e:?}"))?;
    let totp =
        totp_rs::Builder::new().with_secret(secret.as_ref().to_vec()).build().map_err(|e| anyhow!("{e}"))?;
    Ok(totp.generate(unix_secs).to_string())
}

pub fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
