//! The customer's one notice bar on a display, shared by every desktop and clipboard
//! channel open there: it says who views or controls the screen and who shares the
//! clipboard, and how to stop it.
//!
//! Each channel registers what it shares ([`Notices::show`]) before it captures, injects,
//! reads or sets anything, and holds the returned [`Shown`] for as long as it is open; the
//! bar is put up with the first, its text changed as channels come and go, and removed
//! with the last. A notice that cannot be shown fails the registration, so the channel
//! opens nothing. It decides nothing: the agent library has checked the grant.

use assist_desktop::Indicator;
use assist_desktop::indicator::{TO_STOP, notice};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one channel shares with one engineer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// The screen, viewed or controlled.
    Screen { engineer: String, control: bool },
    /// The clipboard.
    Clipboard { engineer: String },
}

/// The notices of one display.
#[derive(Debug)]
pub struct Notices {
    display: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    open: BTreeMap<u64, Sharing>,
    bar: Option<Indicator>,
}

/// One channel's part of the notice; dropping it takes that part away.
#[derive(Debug)]
pub struct Shown {
    notices: Arc<Notices>,
    id: u64,
}

impl Notices {
    pub fn new(display: String) -> Arc<Notices> {
        Arc::new(Notices { display, inner: Mutex::default() })
    }

    /// Adds `what` to the bar (putting it up if it is not), and returns once the server
    /// shows it.
    pub fn show(self: &Arc<Self>, what: Sharing) -> Result<Shown, String> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, what);
        let text = text(&inner.open);
        let shown = match &inner.bar {
            Some(bar) => bar.set_text(&text),
            None => Indicator::show(&self.display, &text).map(|bar| inner.bar = Some(bar)),
        };
        if let Err(e) = shown {
            inner.open.remove(&id);
            return Err(e.to_string());
        }
        Ok(Shown { notices: self.clone(), id })
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        let mut inner = self.notices.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.open.remove(&self.id);
        if inner.open.is_empty() {
            inner.bar = None;
        } else if let Some(bar) = &inner.bar {
            // Saying more than is shared is the safe side of a failure here.
            let _ = bar.set_text(&text(&inner.open));
        }
    }
}

/// What the bar says: each engineer once, what they share, then how to stop it.
fn text(open: &BTreeMap<u64, Sharing>) -> String {
    // Per engineer: viewing (Some(false)) or controlling (Some(true)) the screen, and
    // whether they share the clipboard.
    let mut who: BTreeMap<&str, (Option<bool>, bool)> = BTreeMap::new();
    for sharing in open.values() {
        match sharing {
            Sharing::Screen { engineer, control } => {
                let e = who.entry(engineer).or_default();
                e.0 = Some(e.0.unwrap_or(false) || *control);
            }
            Sharing::Clipboard { engineer } => who.entry(engineer).or_default().1 = true,
        }
    }
    if let [(name, (Some(control), false))] = who.iter().map(|(n, s)| (*n, *s)).collect::<Vec<_>>()[..] {
        // The common case says exactly what the desktop's notice always said.
        return notice(name, control);
    }
    let said: Vec<String> = who
        .into_iter()
        .map(|(name, (screen, clipboard))| match (screen, clipboard) {
            (Some(control), true) => {
                let doing = if control { "controlling" } else { "viewing" };
                format!("{name} is {doing} your screen and shares your clipboard.")
            }
            (Some(control), false) => {
                let doing = if control { "controlling" } else { "viewing" };
                format!("{name} is {doing} your screen.")
            }
            (None, _) => format!("{name} shares your clipboard: what you copy is sent to them."),
        })
        .collect();
    format!("{}\n{TO_STOP}", said.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(list: &[Sharing]) -> BTreeMap<u64, Sharing> {
        list.iter().cloned().enumerate().map(|(i, s)| (i as u64, s)).collect()
    }

    fn screen(engineer: &str, control: bool) -> Sharing {
        Sharing::Screen { engineer: engineer.into(), control }
    }

    fn clip(engineer: &str) -> Sharing {
        Sharing::Clipboard { engineer: engineer.into() }
    }

    #[test]
    fn the_bar_says_who_shares_what_and_how_to_stop_it() {
        assert_eq!(text(&open(&[screen("alice", true)])), notice("alice", true));
        let both = text(&open(&[screen("alice", false), clip("alice")]));
        assert_eq!(both, format!("alice is viewing your screen and shares your clipboard.\n{TO_STOP}"));
        let alone = text(&open(&[clip("alice")]));
        assert!(alone.starts_with("alice shares your clipboard: what you copy is sent to them."), "{alone}");
        // Control wins over a view of the same engineer; two engineers are both named.
        let two = text(&open(&[screen("bob", false), screen("alice", false), screen("alice", true)]));
        assert_eq!(two, format!("alice is controlling your screen. bob is viewing your screen.\n{TO_STOP}"));
    }
}
