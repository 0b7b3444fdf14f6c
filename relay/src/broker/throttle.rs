//! Login throttling: growing delays per user name and per source address.
//!
//! Each login attempt counts as a failure from the moment it is let through (so that many
//! attempts in parallel are all counted) and is forgiven if it succeeds. Once a key (the
//! user name as sent, or the source address) has `free` failures, every further attempt
//! must wait: `delay`, then twice that after the next failure, and so on, up to `lockout`,
//! which is the longest wait and so a temporary lockout. An attempt made while a key must
//! wait is refused before the password is looked at, even when it is the right one. A key
//! without a failure for `lockout` after its last wait ended is forgotten.
//!
//! What this deliberately is not: it is in memory, per relay process, and resets on
//! restart; a relay behind a proxy sees the proxy's address. It decides nothing about
//! passwords and writes no audit events itself: [`LoginThrottle::admit`] hands back what
//! to audit. Time is passed in, so the rules are tested on a virtual clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The throttle's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures of one user name before attempts must wait. Default 5.
    pub user_failures: u32,
    /// Failures from one address before attempts must wait (higher: people share
    /// addresses). Default 20.
    pub address_failures: u32,
    /// The first wait; it doubles with each further failure. Default 1 s.
    pub delay: Duration,
    /// The longest wait (the lockout). Default 15 minutes.
    pub lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            user_failures: 5,
            address_failures: 20,
            delay: Duration::from_secs(1),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// Most keys of each kind remembered: under a flood of made-up user names the oldest
/// are dropped first, so memory stays bounded.
const MAX_KEYS: usize = 10_000;

/// Which key a throttle applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    User(String),
    Address(IpAddr),
}

/// A key that now has to wait: one audit row, however many attempts it refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub scope: Scope,
    /// Failures counted for this key so far.
    pub failures: u32,
    /// How long its next attempt must wait.
    pub wait: Duration,
    /// Attempts refused for this key since its previous row.
    pub refused: u64,
}

/// An attempt let through, to be settled by [`LoginThrottle::succeeded`] or dropped as a
/// failure.
#[derive(Debug)]
pub struct Admitted {
    /// Keys that this attempt made wait; audited once the attempt is settled.
    pub throttled: Vec<Throttled>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
    refused: u64,
}

impl Entry {
    /// A key is forgotten one `forget` after its last failure, or after its wait ended if
    /// that is later: a key at the lockout must not get its free failures back.
    fn forgotten(&self, now: Instant, forget: Duration) -> bool {
        let since = self.until.map_or(self.last, |u| u.max(self.last));
        now >= since + forget
    }
}

struct Keys<K> {
    map: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Keys<K> {
    fn new() -> Self {
        Self { map: HashMap::new() }
    }

    /// The key's entry, if it is not forgotten yet.
    fn live(&mut self, key: &K, now: Instant, forget: Duration) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| e.forgotten(now, forget)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn wait(&mut self, key: &K, now: Instant, forget: Duration) -> Option<Duration> {
        let e = self.live(key, now, forget)?;
        e.until.filter(|u| *u > now).map(|u| u - now)
    }

    fn refuse(&mut self, key: &K) {
        if let Some(e) = self.map.get_mut(key) {
            e.refused += 1;
        }
    }

    /// Counts one failure; the new wait, if this key now has to wait.
    fn fail(
        &mut self,
        key: &K,
        now: Instant,
        cfg: &ThrottleConfig,
        free: u32,
    ) -> Option<(u32, Duration, u64)> {
        if self.live(key, now, cfg.lockout).is_none() {
            if self.map.len() >= MAX_KEYS {
                self.evict(now, cfg.lockout);
            }
            self.map.insert(key.clone(), Entry { failures: 0, last: now, until: None, refused: 0 });
        }
        let e = self.map.get_mut(key)?;
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures < free {
            return None;
        }
        let wait = backoff(cfg, e.failures - free);
        e.until = Some(now + wait);
        Some((e.failures, wait, std::mem::take(&mut e.refused)))
    }

    /// Drops forgotten keys, and if that is not enough the least recently failed one.
    fn evict(&mut self, now: Instant, forget: Duration) {
        self.map.retain(|_, e| !e.forgotten(now, forget));
        if self.map.len() >= MAX_KEYS
            && let Some(oldest) = self.map.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
    }

    /// Takes back one failure counted for an attempt that succeeded.
    fn forgive(&mut self, key: &K, free: u32) {
        if let Some(e) = self.map.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures < free {
                e.until = None;
            }
        }
    }
}

/// `delay · 2^step`, at most `lockout`.
fn backoff(cfg: &ThrottleConfig, step: u32) -> Duration {
    let factor = 1u32.checked_shl(step.min(31)).unwrap_or(u32::MAX);
    cfg.delay.checked_mul(factor).unwrap_or(cfg.lockout).min(cfg.lockout)
}

/// The relay's login throttle.
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    keys: Mutex<(Keys<String>, Keys<IpAddr>)>,
}

impl LoginThrottle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self { cfg, keys: Mutex::new((Keys::new(), Keys::new())) }
    }

    /// Lets an attempt through (counted as a failure until it succeeds), or says how long
    /// the caller must wait.
    pub fn admit(&self, user: &str, addr: IpAddr, now: Instant) -> Result<Admitted, Duration> {
        let cfg = &self.cfg;
        let user = user.to_owned();
        let mut guard = self.keys.lock().expect("throttle lock");
        let (users, addrs) = &mut *guard;
        let wait = users.wait(&user, now, cfg.lockout).max(addrs.wait(&addr, now, cfg.lockout));
        if let Some(wait) = wait {
            users.refuse(&user);
            addrs.refuse(&addr);
            return Err(wait);
        }
        let mut throttled = Vec::new();
        if let Some((failures, wait, refused)) = users.fail(&user, now, cfg, cfg.user_failures) {
            throttled.push(Throttled { scope: Scope::User(user), failures, wait, refused });
        }
        if let Some((failures, wait, refused)) = addrs.fail(&addr, now, cfg, cfg.address_failures) {
            throttled.push(Throttled { scope: Scope::Address(addr), failures, wait, refused });
        }
        Ok(Admitted { throttled })
    }

    /// The attempt succeeded: the user name starts afresh, and the address gets back the
    /// failure counted for it. Returns what is still to audit.
    pub fn succeeded(&self, user: &str, addr: IpAddr, admitted: Admitted) -> Vec<Throttled> {
        let mut guard = self.keys.lock().expect("throttle lock");
        let (users, addrs) = &mut *guard;
        users.map.remove(user);
        addrs.forgive(&addr, self.cfg.address_failures);
        let still = |t: &Throttled| match &t.scope {
            Scope::User(_) => false,
            Scope::Address(a) => addrs.map.get(a).is_some_and(|e| e.until.is_some()),
        };
        admitted.throttled.into_iter().filter(still).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            user_failures: 3,
            address_failures: 6,
            delay: Duration::from_secs(1),
            lockout: Duration::from_secs(60),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delays_grow_after_the_free_failures_up_to_the_lockout() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        // Three free failures; the third makes the next attempt wait 1 s.
        assert!(t.admit("alice", A, t0).unwrap().throttled.is_empty());
        assert!(t.admit("alice", A, t0).unwrap().throttled.is_empty());
        let third = t.admit("alice", A, t0).unwrap();
        assert_eq!(third.throttled.len(), 1);
        assert_eq!(third.throttled[0].scope, Scope::User("alice".into()));
        assert_eq!(third.throttled[0].wait, secs(1));
        assert_eq!(t.admit("alice", A, t0).unwrap_err(), secs(1));
        // Then 2 s, 4 s, … each from the failure that set it.
        let mut now = t0 + secs(1);
        for want in [2, 4, 8, 16, 32, 60, 60] {
            let a = t.admit("alice", A, now).expect("the wait is over");
            assert_eq!(a.throttled[0].wait, secs(want), "after a failure at {:?}", now - t0);
            assert_eq!(
                t.admit("alice", A, now + secs(want) - Duration::from_millis(1)).unwrap_err(),
                Duration::from_millis(1)
            );
            now += secs(want);
        }
    }

    #[test]
    fn a_waiting_user_is_refused_even_from_elsewhere_and_refusals_are_counted_once() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            t.admit("alice", A, t0).unwrap();
        }
        for _ in 0..5 {
            assert!(t.admit("alice", B, t0).is_err(), "the user name waits, wherever it comes from");
        }
        // Other users from the same address are not held up by alice's name.
        assert!(t.admit("bob", A, t0).is_ok());
        let next = t.admit("alice", B, t0 + secs(1)).unwrap();
        assert_eq!(next.throttled[0].refused, 5, "{next:?}");
        assert_eq!(next.throttled[0].failures, 4);
    }

    #[test]
    fn an_address_trying_many_names_waits_too() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        let mut last = None;
        for i in 0..6 {
            last = Some(t.admit(&format!("user{i}"), A, t0).unwrap());
        }
        let last = last.unwrap();
        assert_eq!(
            last.throttled,
            vec![Throttled { scope: Scope::Address(A), failures: 6, wait: secs(1), refused: 0 }]
        );
        assert_eq!(t.admit("someone-new", A, t0).unwrap_err(), secs(1));
        assert!(t.admit("someone-new", B, t0).is_ok(), "another address is not held up");
    }

    #[test]
    fn success_resets_the_user_and_forgives_its_own_attempt_at_the_address() {
        let t = LoginThrottle::new(cfg());
        let t0 = Instant::now();
        t.admit("alice", A, t0).unwrap();
        t.admit("alice", A, t0).unwrap();
        let third = t.admit("alice", A, t0).unwrap();
        // The attempt that would have made alice wait had the right password.
        assert!(t.succeeded("alice", A, third).is_empty());
        for _ in 0..3 {
            let a = t.admit("alice", A, t0).unwrap();
            assert!(t.succeeded("alice", A, a).is_empty());
        }
        assert!(t.admit("alice", A, t0).is_ok(), "successes never lock anyone out");
    }

    #[test]
    fn keys_are_forgotten_one_lockout_after_their_wait_ended() {
        let three = |t: &LoginThrottle, at| {
            for _ in 0..3 {
                t.admit("alice", A, at).unwrap();
            }
        };
        let t0 = Instant::now();
        // The wait ends at t0 + 1 s; a minute later the failures are forgotten.
        let t = LoginThrottle::new(cfg());
        three(&t, t0);
        assert!(t.admit("alice", A, t0 + secs(61)).unwrap().throttled.is_empty());
        // A second earlier they still count: the next failure waits 2 s.
        let t = LoginThrottle::new(cfg());
        three(&t, t0);
        assert_eq!(t.admit("alice", A, t0 + secs(60)).unwrap().throttled[0].wait, secs(2));
    }

    #[test]
    fn made_up_names_cannot_grow_memory_without_bound() {
        let t = LoginThrottle::new(ThrottleConfig { address_failures: u32::MAX, ..cfg() });
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 50 {
            let _ = t.admit(&format!("n{i}"), A, t0 + Duration::from_millis(i as u64));
        }
        assert!(t.keys.lock().unwrap().0.map.len() <= MAX_KEYS);
    }
}
