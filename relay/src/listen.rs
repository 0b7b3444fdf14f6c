//! The relay's TCP listeners for HTTP: an accept loop that cannot be exhausted.
//!
//! Every connection costs a file descriptor, and recordings and the database need theirs:
//! idle or half-sent requests must never use them all. So:
//!
//! - the soft limit on open files is raised to the hard limit at start
//!   ([`raise_fd_limit`]), and half of it is kept back for everything but HTTP: the cap on
//!   connections in total is at most half the limit ([`Limits::for_fd_limit`]);
//! - connections from one address (an IPv6 /64, see [`source_key`]) are capped too, so
//!   that one client cannot take them all;
//! - a connection over either cap is accepted and closed at once (not left in the
//!   kernel's backlog, where it would wait unanswered);
//! - a request's header must arrive within the header timeout (hyper's
//!   `header_read_timeout`), and a connection on which no byte moves for the idle
//!   timeout is closed, whatever it was doing.
//!
//! It is HTTP/1 only. With a TLS acceptor (the console's HTTPS listener) TLS wraps the
//! counted, watched stream before hyper sees it, under the same rules: the handshake must
//! finish within the header timeout, and handshake bytes count as movement for the idle
//! timeout. It does not rate-limit requests on a connection it has admitted.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

/// The rules of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest time to receive a request's whole header. Default 10 s.
    pub header_timeout: Duration,
    /// Longest time without a byte in either direction. Default 60 s.
    pub idle_timeout: Duration,
    /// Most open connections from one address. Default 64.
    pub per_address: usize,
    /// Most open connections in all. Default 4,096, and at most half the open-file limit.
    pub total: usize,
}

/// Default for [`Limits::total`] before the open-file limit is applied.
pub const DEFAULT_TOTAL: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            per_address: 64,
            total: DEFAULT_TOTAL,
        }
    }
}

impl Limits {
    /// These limits with `total` lowered to half of `fd_limit` open files, if it is
    /// higher: the other half stays for recordings, the database, agents' and engineers'
    /// work and the relay itself. Returns whether it was lowered.
    pub fn for_fd_limit(mut self, fd_limit: u64) -> (Self, bool) {
        let most = usize::try_from(fd_limit / 2).unwrap_or(usize::MAX).max(1);
        let lowered = self.total > most;
        self.total = self.total.min(most);
        self.per_address = self.per_address.min(self.total);
        (self, lowered)
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in
/// force (`u64::MAX` for none).
pub fn raise_fd_limit() -> io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if maximum.is_some() && current != maximum {
        setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum })?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// The address a client is counted under: IPv4 addresses (also when mapped into IPv6) as
/// they are, IPv6 addresses by their /64, since one host usually holds a whole /64 and
/// could otherwise pick a fresh address for every connection.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// Open connections, by address and in all.
#[derive(Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// A connection's place under the caps, given back when it is dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    addr: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("listener counts");
        c.total -= 1;
        if let Some(n) = c.by_address.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.addr);
            }
        }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, PartialEq, Eq)]
enum Full {
    Address,
    Total,
}

fn take_slot(counts: &Arc<Mutex<Counts>>, limits: &Limits, addr: IpAddr) -> Result<Slot, Full> {
    let mut c = counts.lock().expect("listener counts");
    if c.total >= limits.total {
        return Err(Full::Total);
    }
    let n = c.by_address.entry(addr).or_default();
    if *n >= limits.per_address {
        return Err(Full::Address);
    }
    *n += 1;
    c.total += 1;
    Ok(Slot { counts: counts.clone(), addr })
}

/// Serves `app` on `listener` under `limits`, until the task is dropped: plain HTTP, or
/// HTTPS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (or another passing failure): the connection waits in
                // the backlog; pausing keeps this loop from spinning on the same error.
                warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let addr = source_key(peer.ip());
        match take_slot(&counts, &limits, addr) {
            Ok(slot) => {
                // Small writes go at once: a keystroke's echo on the browser shell's
                // WebSocket must not wait for the previous segment's acknowledgement.
                let _ = stream.set_nodelay(true);
                // Handlers see the client's address as axum's `ConnectInfo`.
                let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
                tokio::spawn(serve_connection(stream, app, limits, slot, tls.clone()));
            }
            Err(full) => {
                debug!(%addr, ?full, "HTTP connection over the cap closed");
                drop(stream);
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: axum::Router,
    limits: Limits,
    slot: Slot,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let start = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    // The slot travels with the stream: a connection upgraded to a WebSocket (the
    // console's shell, a watcher) keeps counting against the caps until it closes.
    let watched = Watched { inner: stream, start, moved: moved.clone(), _slot: slot };
    match tls {
        None => serve_http(watched, app, limits, start, moved).await,
        Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(watched)).await {
            Ok(Ok(stream)) => serve_http(stream, app, limits, start, moved).await,
            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
            Err(_) => debug!("TLS handshake timed out"),
        },
    }
}

async fn serve_http<S>(stream: S, app: axum::Router, limits: Limits, start: Instant, moved: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service)
        // The console's WebSockets (the browser's shell, watching): once upgraded, the
        // connection is the socket's, which keeps itself alive with pings.
        .with_upgrades();
    tokio::pin!(conn);
    loop {
        let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "HTTP connection ended");
                }
                break;
            }
            _ = tokio::time::sleep_until(last + limits.idle_timeout) => {
                if Instant::now() >= start + Duration::from_millis(moved.load(Ordering::Relaxed)) + limits.idle_timeout {
                    debug!("idle HTTP connection closed");
                    break;
                }
            }
        }
    }
}

/// A stream that notes when a byte last moved, in milliseconds after `start`.
struct Watched {
    inner: TcpStream,
    start: Instant,
    moved: Arc<AtomicU64>,
    /// Held as long as the connection lives, whoever ends up owning it.
    _slot: Slot,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:127.0.0.2"), "127.0.0.2");
        assert_eq!(key("10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn total_is_at_most_half_the_fd_limit() {
        let (l, lowered) = Limits::default().for_fd_limit(1024);
        assert!(lowered);
        assert_eq!(l.total, 512);
        let (l, lowered) = Limits::default().for_fd_limit(1 << 20);
        assert!(!lowered);
        assert_eq!(l.total, DEFAULT_TOTAL);
        let (l, _) = Limits { per_address: 100, ..Limits::default() }.for_fd_limit(64);
        assert_eq!((l.total, l.per_address), (32, 32));
    }

    #[test]
    fn slots_count_per_address_and_in_all_and_come_back_when_dropped() {
        let limits = Limits { per_address: 2, total: 3, ..Limits::default() };
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = take_slot(&counts, &limits, a).unwrap();
        let _a2 = take_slot(&counts, &limits, a).unwrap();
        assert_eq!(take_slot(&counts, &limits, a).err(), Some(Full::Address));
        let _b1 = take_slot(&counts, &limits, b).unwrap();
        assert_eq!(take_slot(&counts, &limits, b).err(), Some(Full::Total));
        drop(a1);
        assert!(take_slot(&counts, &limits, b).is_ok());
        assert!(counts.lock().unwrap().by_address.len() <= 2);
    }
}
