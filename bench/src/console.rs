//! The web console's figures, against the real relay's HTTPS console on loopback:
//!
//! - **request → approver's page**: an approver's open event stream
//!   (`GET /api/v1/requests/events`, read by an HTTP client here, as the page's
//!   `EventSource` reads it) and a real `assist shell` requesting a session on an agent in
//!   `approver` mode. Timed from the moment `assist` is started to the `requests` event
//!   that lists the new request; the baseline is the same process's own
//!   `assist: session … requested` line (the engineer being told), stamped on arrival.
//!   Each request is then denied through the console's API and the next one starts.
//! - **API latency at 50 signed-in users**: 50 approvers signed in at once, each on its
//!   own keep-alive connection, all asking at the same time, one request after another:
//!   the pending requests (`GET /api/v1/requests`) and the sessions list
//!   (`GET /api/v1/audit/sessions`, holding the sessions the first figure made). The
//!   baseline is `GET /api/v1/health` under the same load (TLS, HTTP and the router,
//!   without a session check or the broker).
//!
//! Approvers sign in with a password only here (`serve --require-mfa admin`): the second
//! factor is a sign-in step and costs nothing per request afterwards.

use crate::Ctx;
use crate::procs::{Line, Proc};
use crate::report::{Better, Figure, Series, percentile};
use crate::world::{Bins, REASON, World};
use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

/// Approvers signed in at once for the latency figure.
const USERS: usize = 50;
const PASSWORD: &str = "bench-password-123";
/// The agent whose requests go to approvers.
const AGENT: &str = "bench-approved-agent";
/// Longest wait for one event or answer.
const LIMIT: Duration = Duration::from_secs(30);

/// The console's address and how to reach it.
#[derive(Clone)]
struct Console {
    addr: SocketAddr,
    tls: TlsConnector,
}

type Sender = SendRequest<Full<Bytes>>;

impl Console {
    fn new(addr: SocketAddr, ca_pem: &Path) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_pem)? {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(Self { addr, tls: TlsConnector::from(Arc::new(config)) })
    }

    /// A new keep-alive connection.
    async fn connect(&self) -> Result<Sender> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost")?;
        let tls = self.tls.connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// A request as the console's own page sends it.
    fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Request<Full<Bytes>> {
        let host = format!("localhost:{}", self.addr.port());
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &host)
            .header("origin", format!("https://{host}"))
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json");
        if let Some(c) = cookie {
            b = b.header("cookie", format!("__Host-assist={c}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        b.body(Full::new(body)).expect("a well-formed request")
    }

    /// Sends and reads the whole answer; fails unless it is 2xx.
    async fn call(send: &mut Sender, req: Request<Full<Bytes>>) -> Result<(Response<()>, Bytes)> {
        let uri = req.uri().clone();
        send.ready().await?;
        let res = send.send_request(req).await?;
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await?.to_bytes();
        if !parts.status.is_success() {
            bail!("{uri}: {} {}", parts.status, String::from_utf8_lossy(&bytes));
        }
        Ok((Response::from_parts(parts, ()), bytes))
    }

    /// Signs `user` in; returns the session cookie's value.
    async fn sign_in(&self, send: &mut Sender, user: &str) -> Result<String> {
        let req = self.request(
            "POST",
            "/api/v1/login",
            None,
            Some(serde_json::json!({ "user": user, "password": PASSWORD })),
        );
        let (res, body) = Self::call(send, req).await?;
        let stage: serde_json::Value = serde_json::from_slice(&body)?;
        if stage["stage"] != "full" {
            bail!("{user} is not fully signed in: {stage}");
        }
        let set = res.headers().get("set-cookie").ok_or_else(|| anyhow!("no cookie for {user}"))?.to_str()?;
        let value = set.strip_prefix("__Host-assist=").and_then(|v| v.split(';').next());
        Ok(value.ok_or_else(|| anyhow!("bad cookie {set}"))?.to_owned())
    }
}

/// An open event stream, read event by event.
struct Events {
    body: Incoming,
    buf: String,
    /// Kept while the stream is read.
    _send: Sender,
}

impl Events {
    async fn open(console: &Console, cookie: &str) -> Result<Self> {
        let mut send = console.connect().await?;
        let req = console.request("GET", "/api/v1/requests/events", Some(cookie), None);
        send.ready().await?;
        let res = send.send_request(req).await?;
        if !res.status().is_success() {
            bail!("event stream: {}", res.status());
        }
        Ok(Self { body: res.into_body(), buf: String::new(), _send: send })
    }

    /// The next event's name and data, and when it was complete.
    async fn next(&mut self) -> Result<(String, String, Instant)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok((name, data, Instant::now()));
            }
            let frame = tokio::time::timeout(LIMIT, self.body.frame())
                .await
                .context("no event within the limit")?
                .ok_or_else(|| anyhow!("the event stream ended"))??;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Enrolls and starts an agent in `approver` mode.
fn approver_agent(world: &World, dir: &Path) -> Result<Proc> {
    let bins: &Bins = &world.bins;
    let token = world.relay.admin(bins, &["token", "create", "--org", "acme"], "")?;
    crate::procs::run_ok(
        "assist-agent enroll",
        bins.command("assist-agent").arg("--data-dir").arg(dir).args([
            "enroll",
            "--relay",
            &world.relay.addr,
            "--token",
            &token,
            "--ca-fingerprint",
            &world.relay.fingerprint,
            "--name",
            AGENT,
        ]),
    )?;
    let mut cmd = bins.command("assist-agent");
    cmd.arg("--data-dir").arg(dir).args(["run", "--consent", "approver"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut proc = Proc::spawn("assist-agent (approver mode)", &mut cmd)?;
    let mut err = proc.stderr_lines()?;
    err.wait_for("assist-agent: connected to", crate::world::START)?;
    err.forward(None);
    Ok(proc)
}

/// One request: started, seen on the page, told to the engineer.
struct Round {
    page: Duration,
    told: Duration,
}

async fn request_rounds(world: &World, console: &Console, bob: &str, n: usize) -> Result<Vec<Round>> {
    let mut events = Events::open(console, bob).await?;
    // The stream starts with the lists as they are.
    let mut known: Vec<String> = Vec::new();
    let mut answer = console.connect().await?;
    let mut rounds = Vec::new();
    for round in 1..=n {
        if round % 20 == 1 {
            eprintln!("assist-bench: console request {round}/{n}");
        }
        let mut cmd = world.bins.command("assist");
        cmd.env("ASSIST_CONFIG_DIR", &world.config)
            .args([
                "shell",
                AGENT,
                "--ticket",
                &format!("BENCH-{round}"),
                "--reason",
                REASON,
                "-T",
                "--",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut shell = Proc::spawn("assist shell", &mut cmd)?;
        let mut lines = shell.stderr_lines()?;
        let (id, seen) = loop {
            let (name, data, at) = events.next().await?;
            if name != "requests" {
                continue;
            }
            let list: serde_json::Value = serde_json::from_str(&data)?;
            let new = list.as_array().into_iter().flatten().find_map(|r| {
                let id = r["id"].as_str()?;
                (!known.iter().any(|k| k == id)).then(|| id.to_owned())
            });
            if let Some(id) = new {
                break (id, at);
            }
        };
        known.push(id.clone());
        let deny = console.request(
            "POST",
            &format!("/api/v1/requests/{id}/deny"),
            Some(bob),
            Some(serde_json::json!({ "reason": "benchmark" })),
        );
        Console::call(&mut answer, deny).await?;
        tokio::task::block_in_place(|| shell.wait(LIMIT))?;
        let all: Vec<Line> = tokio::task::block_in_place(|| lines.finish(LIMIT).to_vec());
        let told = all
            .iter()
            .find(|l| l.text.starts_with("assist: session ") && l.text.contains(" requested"))
            .ok_or_else(|| {
                anyhow!(
                    "assist printed no requested line: {:?}",
                    all.iter().map(|l| &l.text).collect::<Vec<_>>()
                )
            })?;
        rounds.push(Round { page: seen - started, told: told.at - started });
    }
    Ok(rounds)
}

/// `USERS` signed-in users asking `path` at once, `rounds` times each: every latency.
async fn under_load(console: &Console, cookies: &[String], path: &str, rounds: usize) -> Result<Vec<f64>> {
    let start = Arc::new(tokio::sync::Barrier::new(cookies.len()));
    let mut tasks = Vec::new();
    for cookie in cookies {
        let (console, cookie, start, path) =
            (console.clone(), cookie.clone(), start.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut send = console.connect().await?;
            // One request first, so every connection is open and warm before timing.
            Console::call(&mut send, console.request("GET", &path, Some(&cookie), None)).await?;
            start.wait().await;
            let mut took = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t = Instant::now();
                Console::call(&mut send, console.request("GET", &path, Some(&cookie), None)).await?;
                took.push(ms(t.elapsed()));
            }
            anyhow::Ok(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn percentiles(f: &mut Figure, name: &str, samples: &[f64]) {
    let p = |q| percentile(samples, q).map_or("-".into(), |v| format!("{v:.2}"));
    f.note(format!("{name}: p50 {} ms, p99 {} ms over {} samples", p(50.0), p(99.0), samples.len()));
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let dir = ctx.dir.join("console");
    let world =
        World::start_with(&ctx.bins, &dir, &["--require-mfa", "admin", "--console-name", "localhost"])
            .context("starting the console's relay")?;
    let addr: SocketAddr = world
        .relay
        .console
        .as_deref()
        .ok_or_else(|| anyhow!("the relay printed no console address"))?
        .parse()?;
    let console = Console::new(addr, &world.relay.data.join("ca.pem"))?;
    let _agent = approver_agent(&world, &dir.join("approver-agent"))?;
    let users: Vec<String> = (1..=USERS).map(|i| format!("approver{i:02}")).collect();
    for u in &users {
        world.relay.admin(
            &world.bins,
            &["user", "add", u, "--org", "acme", "--role", "approver", "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )?;
    }
    let requests = if ctx.settings.quick { 10 } else { 100 };
    let load_rounds = if ctx.settings.quick { 3 } else { 40 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let mut send = console.connect().await?;
        let mut cookies = Vec::new();
        for u in &users {
            cookies.push(console.sign_in(&mut send, u).await?);
        }
        let rounds = request_rounds(&world, &console, &cookies[0], requests).await?;
        let page: Vec<f64> = rounds.iter().map(|r| ms(r.page)).collect();
        let told: Vec<f64> = rounds.iter().map(|r| ms(r.told)).collect();

        let mut figures = Vec::new();
        for (id, title, q) in [
            ("console_request_p50_ms", "engineer's request -> on the approver's open page, p50", 50.0),
            ("console_request_p99_ms", "engineer's request -> on the approver's open page, p99", 99.0),
        ] {
            let mut f = Figure::new(id, title, "ms", Better::Lower, "approver's page");
            f.push(Series::new("approver's page", percentile(&page, q).into_iter().collect()));
            f.push(Series::new("engineer told", percentile(&told, q).into_iter().collect()));
            percentiles(&mut f, "approver's page", &page);
            percentiles(&mut f, "engineer told", &told);
            f.note(format!(
                "{requests} real `assist shell` requests, timed from the process start: to the `requests` event on an open \
                 /api/v1/requests/events stream (page), and to the client's own 'requested' line (engineer told)"
            ));
            figures.push(f.finish());
        }

        let health = under_load(&console, &cookies, "/api/v1/health", load_rounds).await?;
        let pending = under_load(&console, &cookies, "/api/v1/requests", load_rounds).await?;
        let sessions = under_load(&console, &cookies, "/api/v1/audit/sessions", load_rounds).await?;
        for (list, samples, path) in
            [("requests", &pending, "/api/v1/requests"), ("sessions", &sessions, "/api/v1/audit/sessions")]
        {
            for (q, tag) in [(50.0, "p50"), (99.0, "p99")] {
                let mut f = Figure::new(
                    &format!("console_{list}_list_{tag}_ms"),
                    &format!("console {list} list with {USERS} signed-in users asking at once, {tag}"),
                    "ms",
                    Better::Lower,
                    path,
                );
                f.push(Series::new(path, percentile(samples, q).into_iter().collect()));
                f.push(Series::new("/api/v1/health", percentile(&health, q).into_iter().collect()));
                if tag == "p50" {
                    percentiles(&mut f, path, samples);
                    percentiles(&mut f, "/api/v1/health", &health);
                    f.note(format!(
                        "{USERS} approvers, one keep-alive HTTPS connection each, {load_rounds} requests each in turn, \
                         all started together; the sessions list holds the {requests} sessions above"
                    ));
                }
                figures.push(f.finish());
            }
        }
        anyhow::Ok(figures)
    })
}
