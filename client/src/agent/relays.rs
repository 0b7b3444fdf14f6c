//! Which relays the agent keeps a connection to, and which connection each session came on.
//!
//! A single relay (the default): one connection, to the enrollment's address. A cluster
//! (README "Several relays"): one connection to every relay, so any relay reaches the
//! agent directly. The agent learns the relays from a relay's `Welcome` (and keeps them in
//! `relays.json` for its next start), or from `--relay ADDR`. Until it knows them, it
//! connects to its enrollment's address (one name in DNS, or any relay); that first
//! connection stands in for the relay it reached, and once it ends the agent reconnects to
//! that relay by its own address. A relay once learnt is retried with backoff for as long
//! as the agent runs, so a lost relay's connection comes back when the relay does.
//!
//! [`Roster`] decides which addresses get a connection; [`Links`] routes what the prompt
//! sends (an answer, the kill key) to the connection of the session it concerns, or to all.

use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentToRelay, RelayAddress};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// The relays to connect to, and the connections running.
#[derive(Debug)]
pub struct Roster {
    inner: Mutex<RosterState>,
}

#[derive(Debug)]
struct RosterState {
    /// Addresses given on the command line: always connected.
    fixed: BTreeSet<String>,
    /// Every relay learnt while running (the addresses of a cluster).
    learnt: Vec<RelayAddress>,
    /// Running connection tasks by address, with the relay's name once welcomed.
    running: HashMap<String, Option<String>>,
}

impl Roster {
    /// `fixed`: `--relay` addresses; `learnt`: the relays kept from the last run. Returns
    /// the roster and the addresses to connect to first (`bootstrap` when there is nothing
    /// else).
    pub fn new(fixed: Vec<String>, learnt: Vec<RelayAddress>, bootstrap: &str) -> (Roster, Vec<String>) {
        let fixed: BTreeSet<String> = fixed.into_iter().collect();
        let mut first: Vec<String> = fixed.iter().cloned().collect();
        for r in &learnt {
            if !first.contains(&r.address) {
                first.push(r.address.clone());
            }
        }
        if first.is_empty() {
            first.push(bootstrap.to_owned());
        }
        let running = first.iter().map(|a| (a.clone(), None)).collect();
        (Roster { inner: Mutex::new(RosterState { fixed, learnt, running }) }, first)
    }

    /// The connection to `address` was welcomed by relay `name` listing `relays`. Returns
    /// the addresses that need a connection now (each then counts as running), and whether
    /// the list of learnt relays changed.
    pub fn welcomed(&self, address: &str, name: &str, relays: &[RelayAddress]) -> (Vec<String>, bool) {
        let mut st = self.inner.lock().expect("roster lock");
        st.running.insert(address.to_owned(), Some(name.to_owned()));
        let mut changed = false;
        for r in relays {
            match st.learnt.iter_mut().find(|l| l.name == r.name) {
                Some(l) if l.address == r.address => {}
                Some(l) => {
                    l.address = r.address.clone();
                    changed = true;
                }
                None => {
                    st.learnt.push(r.clone());
                    changed = true;
                }
            }
        }
        (st.uncovered(), changed)
    }

    /// The connection task for `address` lost its connection. Returns false if the task
    /// should end (it stood in for a relay that has an address of its own), and then the
    /// addresses that need a connection instead.
    pub fn lost(&self, address: &str) -> (bool, Vec<String>) {
        let mut st = self.inner.lock().expect("roster lock");
        let listed = st.fixed.contains(address) || st.learnt.iter().any(|r| r.address == address);
        if listed || st.learnt.is_empty() {
            return (true, Vec::new());
        }
        st.running.remove(address);
        (false, st.uncovered())
    }

    /// The relays learnt so far (for `relays.json`).
    pub fn learnt(&self) -> Vec<RelayAddress> {
        self.inner.lock().expect("roster lock").learnt.clone()
    }
}

impl RosterState {
    /// Learnt relays that no running connection reaches (by address, or by the name its
    /// relay gave), marked running.
    fn uncovered(&mut self) -> Vec<String> {
        let missing: Vec<String> = self
            .learnt
            .iter()
            .filter(|r| {
                !self.running.contains_key(&r.address)
                    && !self.running.values().any(|n| n.as_deref() == Some(r.name.as_str()))
            })
            .map(|r| r.address.clone())
            .collect();
        for a in &missing {
            self.running.insert(a.clone(), None);
        }
        missing
    }
}

/// The control streams of the agent's live connections, and the connection each session
/// came on.
#[derive(Debug, Default)]
pub struct Links {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, mpsc::Sender<AgentToRelay>>>,
    owners: Mutex<HashMap<SessionId, u64>>,
}

impl Links {
    /// Adds a live connection's control stream; returns its id.
    pub fn add(&self, tx: mpsc::Sender<AgentToRelay>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().expect("links lock").insert(id, tx);
        id
    }

    /// Forgets a connection that ended, and the sessions that came on it.
    pub fn remove(&self, id: u64) {
        self.conns.lock().expect("links lock").remove(&id);
        self.owners.lock().expect("links lock").retain(|_, c| *c != id);
    }

    /// Records that `session` came on connection `id`.
    pub fn own(&self, session: &SessionId, id: u64) {
        self.owners.lock().expect("links lock").insert(session.clone(), id);
    }

    pub fn disown(&self, session: &SessionId) {
        self.owners.lock().expect("links lock").remove(session);
    }

    /// Sends `msg` to the connection of the session it names, or to every connection (the
    /// kill key of every session).
    pub async fn route(&self, msg: AgentToRelay) {
        let session = match &msg {
            AgentToRelay::ConsentAnswer { session, .. } | AgentToRelay::Kill { session: Some(session) } => {
                Some(session.clone())
            }
            _ => None,
        };
        let targets: Vec<mpsc::Sender<AgentToRelay>> = {
            let conns = self.conns.lock().expect("links lock");
            match session {
                Some(s) => {
                    let owner = self.owners.lock().expect("links lock").get(&s).copied();
                    owner.and_then(|id| conns.get(&id).cloned()).into_iter().collect()
                }
                None => conns.values().cloned().collect(),
            }
        };
        for tx in targets {
            let _ = tx.send(msg.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, address: &str) -> RelayAddress {
        RelayAddress { name: name.into(), address: address.into() }
    }

    #[test]
    fn a_single_relay_is_one_connection_to_the_enrollment() {
        let (roster, first) = Roster::new(vec![], vec![], "relay.example:4433");
        assert_eq!(first, ["relay.example:4433"]);
        assert_eq!(roster.welcomed("relay.example:4433", "default", &[]), (vec![], false));
        assert_eq!(roster.lost("relay.example:4433"), (true, vec![]));
    }

    #[test]
    fn the_first_connection_stands_in_for_its_relay_until_it_ends() {
        let (roster, first) = Roster::new(vec![], vec![], "assist.example:4433");
        assert_eq!(first, ["assist.example:4433"]);
        let all = [relay("r1", "10.0.0.1:4433"), relay("r2", "10.0.0.2:4433"), relay("r3", "10.0.0.3:4433")];
        let (more, changed) = roster.welcomed("assist.example:4433", "r2", &all);
        assert!(changed);
        assert_eq!(more, ["10.0.0.1:4433", "10.0.0.3:4433"], "r2 is reached already");
        assert_eq!(roster.welcomed("10.0.0.1:4433", "r1", &all), (vec![], false));
        // The stand-in's connection ends: it stops, and r2 gets its own.
        assert_eq!(roster.lost("assist.example:4433"), (false, vec!["10.0.0.2:4433".to_owned()]));
        // A learnt relay is retried for as long as the agent runs.
        assert_eq!(roster.lost("10.0.0.1:4433"), (true, vec![]));
        assert_eq!(roster.learnt().len(), 3);
    }

    #[test]
    fn a_kept_list_and_fixed_addresses_start_every_connection() {
        let kept = vec![relay("r1", "10.0.0.1:4433"), relay("r2", "10.0.0.2:4433")];
        let (roster, first) = Roster::new(vec!["10.0.0.9:4433".into()], kept.clone(), "ignored:4433");
        assert_eq!(first, ["10.0.0.9:4433", "10.0.0.1:4433", "10.0.0.2:4433"]);
        let (more, changed) =
            roster.welcomed("10.0.0.1:4433", "r1", &[kept[0].clone(), relay("r4", "10.0.0.4:4433")]);
        assert_eq!((more, changed), (vec!["10.0.0.4:4433".to_owned()], true));
        assert_eq!(roster.lost("10.0.0.9:4433"), (true, vec![]));
    }

    #[tokio::test]
    async fn answers_go_to_their_sessions_connection_and_the_kill_key_to_all() {
        let links = Links::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (c1, c2) = (links.add(tx1), links.add(tx2));
        links.own(&SessionId::new("s-on-2"), c2);
        let answer = AgentToRelay::ConsentAnswer {
            session: SessionId::new("s-on-2"),
            approve: true,
            reason: None,
            capabilities: None,
        };
        links.route(answer.clone()).await;
        assert_eq!(rx2.try_recv().unwrap(), answer);
        assert!(rx1.try_recv().is_err());
        links.route(AgentToRelay::Kill { session: None }).await;
        assert_eq!(rx1.try_recv().unwrap(), AgentToRelay::Kill { session: None });
        assert_eq!(rx2.try_recv().unwrap(), AgentToRelay::Kill { session: None });
        links.remove(c2);
        links.route(answer).await;
        assert!(rx1.try_recv().is_err(), "an answer for a gone connection goes nowhere");
        let _ = c1;
    }
}
