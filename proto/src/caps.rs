//! Capabilities, ticket priorities, roles and consent modes.
//!
//! A capability has a textual form used on the command line and in listings
//! (`shell`, `exec:db-health,disk-usage`, `files.read:/var/log/erp`, `forward:db:5432`)
//! and a typed form on the wire. Only a capability some channel serves
//! ([`Capability::is_served`]) may be asked for or granted: the relay refuses a request,
//! escalation or approval naming another, and the agent refuses a grant or a prompt that
//! names one, so nobody can consent to something that would do nothing.
//!
//! A grant may be narrower than the request ([`Capability::within`]): fewer roots, a root
//! deeper in the tree, fewer scripts. Roots are absolute, normalised `/`-paths, compared by
//! whole components, never by string prefix.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One thing an engineer may be allowed to do in a session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Capability {
    /// An interactive shell or a command, like `ssh host [cmd]`.
    Shell,
    /// Named diagnostic scripts from the agent's allowlist.
    Exec {
        scripts: Vec<String>,
    },
    DesktopView,
    DesktopControl,
    FilesRead {
        roots: Vec<String>,
    },
    FilesWrite {
        roots: Vec<String>,
    },
    Forward {
        target: String,
    },
    Clipboard,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Shell => f.write_str("shell"),
            Capability::Exec { scripts } => write!(f, "exec:{}", scripts.join(",")),
            Capability::DesktopView => f.write_str("desktop.view"),
            Capability::DesktopControl => f.write_str("desktop.control"),
            Capability::FilesRead { roots } => write!(f, "files.read:{}", roots.join(",")),
            Capability::FilesWrite { roots } => write!(f, "files.write:{}", roots.join(",")),
            Capability::Forward { target } => write!(f, "forward:{target}"),
            Capability::Clipboard => f.write_str("clipboard"),
        }
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let list = |what: &str| -> Result<Vec<String>, String> {
            let items: Vec<String> =
                arg.unwrap_or("").split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect();
            if items.is_empty() {
                Err(format!("capability {kind} needs {what}, e.g. {kind}:{}", example(kind)))
            } else {
                Ok(items)
            }
        };
        let cap = match (kind, arg) {
            ("shell", None) => Capability::Shell,
            ("desktop.view", None) => Capability::DesktopView,
            ("desktop.control", None) => Capability::DesktopControl,
            ("clipboard", None) => Capability::Clipboard,
            ("exec", _) => Capability::Exec { scripts: list("script names")? },
            ("files.read", _) => Capability::FilesRead { roots: list("roots")? },
            ("files.write", _) => Capability::FilesWrite { roots: list("roots")? },
            ("forward", Some(t)) if t.contains(':') => Capability::Forward { target: t.to_owned() },
            ("forward", _) => return Err("capability forward needs host:port, e.g. forward:db:5432".into()),
            (k, Some(_)) if matches!(k, "shell" | "desktop.view" | "desktop.control" | "clipboard") => {
                return Err(format!("capability {k} takes no argument"));
            }
            _ => {
                return Err(format!(
                    "unknown capability {s:?}: expected shell, exec:NAMES, desktop.view, desktop.control, files.read:ROOTS, files.write:ROOTS, forward:HOST:PORT or clipboard"
                ));
            }
        };
        Ok(cap)
    }
}

/// A capability that no channel serves yet was named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} is not available on this {place} yet")]
pub struct NotServed {
    /// The capability's kind, e.g. `desktop.view`.
    pub kind: &'static str,
    /// Who refuses: `relay` or `agent`.
    pub place: &'static str,
}

impl Capability {
    /// Whether a channel serves this capability. The one list of what is served: the relay
    /// and the agent both ask here, so a new channel kind is switched on in this match.
    pub fn is_served(&self) -> bool {
        match self {
            Capability::Shell
            | Capability::Exec { .. }
            | Capability::FilesRead { .. }
            | Capability::FilesWrite { .. }
            | Capability::Forward { .. }
            | Capability::DesktopView
            | Capability::DesktopControl
            | Capability::Clipboard => true,
        }
    }

    /// Refuses a capability no channel serves; `place` names the refuser in the message.
    pub fn check_served(&self, place: &'static str) -> Result<(), NotServed> {
        if self.is_served() { Ok(()) } else { Err(NotServed { kind: self.kind(), place }) }
    }

    /// The kind alone: `shell`, `exec`, `files.read`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Capability::Shell => "shell",
            Capability::Exec { .. } => "exec",
            Capability::DesktopView => "desktop.view",
            Capability::DesktopControl => "desktop.control",
            Capability::FilesRead { .. } => "files.read",
            Capability::FilesWrite { .. } => "files.write",
            Capability::Forward { .. } => "forward",
            Capability::Clipboard => "clipboard",
        }
    }

    /// Whether everything `self` allows is also allowed by `wider` (equal, or narrower: a
    /// subset of scripts, or every root inside one of `wider`'s roots).
    pub fn within(&self, wider: &Capability) -> bool {
        match (self, wider) {
            (Capability::Exec { scripts: a }, Capability::Exec { scripts: b }) => {
                a.iter().all(|s| b.contains(s))
            }
            (Capability::FilesRead { roots: a }, Capability::FilesRead { roots: b })
            | (Capability::FilesWrite { roots: a }, Capability::FilesWrite { roots: b }) => {
                a.iter().all(|r| b.iter().any(|w| path_within(r, w)))
            }
            (a, b) => a == b,
        }
    }

    /// Whether a revocation selector names this capability: a kind (`files.read`) names
    /// every capability of that kind; a full form (`files.read:/var/log`) names that one.
    pub fn selected_by(&self, selector: &str) -> bool {
        selector == self.kind() || selector == self.to_string()
    }

    /// Checks what a parser cannot: roots are absolute and normalised, script names are
    /// plain names, forward targets are `HOST:PORT` (`crate::forward`). The error's message
    /// is for people.
    pub fn validate(&self) -> Result<(), BadCapability> {
        match self {
            Capability::Exec { scripts } => {
                if scripts.is_empty() || scripts.len() > MAX_ITEMS {
                    return Err(BadCapability::ScriptCount);
                }
                for s in scripts {
                    let ok = !s.is_empty()
                        && s.len() <= 64
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && !s.starts_with('.');
                    if !ok {
                        return Err(BadCapability::ScriptName(s.clone()));
                    }
                }
            }
            Capability::FilesRead { roots } | Capability::FilesWrite { roots } => {
                if roots.is_empty() || roots.len() > MAX_ITEMS {
                    return Err(BadCapability::RootCount(self.kind()));
                }
                for r in roots {
                    if r.chars().any(crate::text::is_unsafe) {
                        return Err(BadCapability::RootUnsafe(r.clone()));
                    }

                    check_path_length("root", r, MAX_ROOT_LEN, "the longest root a grant may name")?;
                    if !is_normal_absolute(r) {
                        return Err(BadCapability::RootNotNormal(r.clone()));
                    }
                }
            }
            Capability::Forward { target } => {
                if target.chars().any(crate::text::is_unsafe) {
                    return Err(BadCapability::ForwardUnsafe(target.clone()));
                }
                crate::forward::Target::parse(target).map_err(BadCapability::ForwardForm)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The most script names or roots one capability may list.
const MAX_ITEMS: usize = 32;
/// The longest root a grant may name, in bytes.
const MAX_ROOT_LEN: usize = 1024;

/// A capability that parsed but is not well formed ([`Capability::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadCapability {
    #[error("exec needs 1 to {MAX_ITEMS} script names")]
    ScriptCount,
    #[error("script name {0:?} must be letters, digits, '-', '_' or '.'")]
    ScriptName(String),
    /// The kind (`files.read` or `files.write`) lists no root, or too many.
    #[error("{0} needs 1 to {MAX_ITEMS} roots")]
    RootCount(&'static str),
    #[error("root {0:?} holds a control or invisible formatting character")]
    RootUnsafe(String),
    #[error(transparent)]
    RootLength(#[from] PathLengthError),
    #[error("root {0:?} must be an absolute path without '.', '..' or empty components")]
    RootNotNormal(String),
    #[error("forward target {0:?} holds a control or invisible formatting character")]
    ForwardUnsafe(String),
    /// The target is not `HOST:PORT` (the message says what is wrong with it).
    #[error("{0}")]
    ForwardForm(String),
}

/// `/a/b` is within `/a` and `/a/b`, not within `/a/bc`. `/` contains everything.
pub fn path_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(root) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The longest path component, in bytes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;
/// The longest path, in bytes (Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// A path over a file-system limit. The message says which limit was passed, by how much,
/// and shows only the start of the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathLengthError {
    #[error(
        "{what} has a component of {len} bytes ({head:?}…); a component may have at most {NAME_MAX} bytes (NAME_MAX)"
    )]
    Component { what: String, len: usize, head: String },
    #[error("{what} of {len} bytes ({head:?}…) is longer than {max} bytes ({limit})")]
    Path { what: String, len: usize, head: String, max: usize, limit: String },
}

/// Checks a path's length: each component at most [`NAME_MAX`] bytes, the whole at most
/// `max` bytes (`limit` says which limit that is, for the message).
pub fn check_path_length(what: &str, p: &str, max: usize, limit: &str) -> Result<(), PathLengthError> {
    if let Some(c) = p.split('/').find(|c| c.len() > NAME_MAX) {
        return Err(PathLengthError::Component {
            what: what.to_owned(),
            len: c.len(),
            head: head(c).to_owned(),
        });
    }
    if p.len() > max {
        return Err(PathLengthError::Path {
            what: what.to_owned(),
            len: p.len(),
            head: head(p).to_owned(),
            max,
            limit: limit.to_owned(),
        });
    }
    Ok(())
}

/// The first few characters of a long text, for a message.
fn head(text: &str) -> &str {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An absolute `/`-path without `.`, `..`, empty components, backslashes or NUL (a
/// trailing `/` is allowed).
pub fn is_normal_absolute(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    let Some(rest) = p.strip_prefix('/') else { return false };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    !p.contains('\\') && !p.contains('\0') && rest.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn example(kind: &str) -> &'static str {
    match kind {
        "exec" => "db-health",
        _ => "/var/log/erp",
    }
}

/// Ticket priority. P0 is the most urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
}

impl Priority {
    /// P0 and P1 are urgent: shown first, and they may have a shorter consent timeout.
    pub fn is_urgent(self) -> bool {
        matches!(self, Priority::P0 | Priority::P1)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
        })
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "P0" => Ok(Priority::P0),
            "P1" => Ok(Priority::P1),
            "P2" => Ok(Priority::P2),
            "P3" => Ok(Priority::P3),
            _ => Err(format!("invalid priority {s:?}: expected P0, P1, P2 or P3")),
        }
    }
}

/// What a user may do. One role per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Requests sessions on agents of organisations their organisation supports.
    Engineer,
    /// Answers requests for agents of their own organisation, and may end its sessions.
    Approver,
    /// Reads sessions (and, later, recordings and the audit log) of their organisation.
    Auditor,
    /// Everything within their organisation, and ends any session.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "engineer" => Ok(Role::Engineer),
            "approver" => Ok(Role::Approver),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("invalid role {s:?}: expected engineer, approver, auditor or admin")),
        }
    }
}

/// Where an agent's consent comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// The customer at the agent machine answers a prompt.
    Prompt,
    /// An approver of the agent's organisation answers.
    Approver,
    /// Unattended: a request inside one of the organisation's pre-approved maintenance
    /// windows is granted by that window; any other request waits for an approver.
    Window,
}

impl fmt::Display for ConsentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsentMode::Prompt => "prompt",
            ConsentMode::Approver => "approver",
            ConsentMode::Window => "window",
        })
    }
}

impl FromStr for ConsentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prompt" => Ok(ConsentMode::Prompt),
            "approver" => Ok(ConsentMode::Approver),
            "window" => Ok(ConsentMode::Window),
            _ => Err(format!("invalid consent mode {s:?}: expected prompt, approver or window")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Capability) {
        let parsed: Capability = text.parse().unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed.to_string(), text);
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), parsed);
    }

    #[test]
    fn capability_forms_round_trip() {
        check("shell", Capability::Shell);
        check(
            "exec:db-health,disk-usage",
            Capability::Exec { scripts: vec!["db-health".into(), "disk-usage".into()] },
        );
        check("files.read:/var/log/erp", Capability::FilesRead { roots: vec!["/var/log/erp".into()] });
        check(
            "files.write:/opt/a,/opt/b",
            Capability::FilesWrite { roots: vec!["/opt/a".into(), "/opt/b".into()] },
        );
        check("forward:db:5432", Capability::Forward { target: "db:5432".into() });
        check("desktop.view", Capability::DesktopView);
        check("desktop.control", Capability::DesktopControl);
        check("clipboard", Capability::Clipboard);
    }

    #[test]
    fn bad_capabilities_say_what_is_expected() {
        for bad in ["", "root", "shell:x", "files.read", "files.read:", "forward:db", "exec"] {
            let err = bad.parse::<Capability>().unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn narrower_grants_are_within_the_request() {
        let cap = |s: &str| s.parse::<Capability>().unwrap();
        assert!(cap("files.read:/var/log/erp").within(&cap("files.read:/var/log")));
        assert!(cap("files.read:/var/log").within(&cap("files.read:/var/log,/opt")));
        assert!(!cap("files.read:/var/logs").within(&cap("files.read:/var/log")));
        assert!(!cap("files.read:/var").within(&cap("files.read:/var/log")));
        assert!(!cap("files.write:/var/log").within(&cap("files.read:/var/log")));
        assert!(cap("files.read:/etc").within(&cap("files.read:/")));
        assert!(cap("exec:a").within(&cap("exec:a,b")));
        assert!(!cap("exec:a,c").within(&cap("exec:a,b")));
        assert!(cap("shell").within(&cap("shell")));
        assert!(!cap("forward:db:5433").within(&cap("forward:db:5432")));
    }

    #[test]
    fn validation_refuses_escapes_and_junk() {
        let cap = |s: &str| s.parse::<Capability>().unwrap();
        for bad in [
            "files.read:var/log",
            "files.read:/var/../etc",
            "files.write:/var/./log",
            "files.read:/var//log",
            "exec:../x",
            "exec:a;rm",
            "forward:db:http",
            "forward::22",
            "forward:db:0",
            "forward:169.254.169.254:99999",
            "forward:a_b:22",
        ] {
            assert!(cap(bad).validate().is_err(), "{bad}");
        }
        for good in [
            "files.read:/var/log/",
            "files.read:/",
            "exec:db-health",
            "forward:db:5432",
            "forward:[fd00::5]:22",
            "forward:169.254.169.254:80",
            "shell",
        ] {
            assert!(cap(good).validate().is_ok(), "{good}");
        }
        assert!(cap("files.read:/var/log").selected_by("files.read"));
        assert!(cap("files.read:/var/log").selected_by("files.read:/var/log"));
        assert!(!cap("files.read:/var/log").selected_by("shell"));
    }

    #[test]
    fn only_capabilities_with_a_channel_are_served() {
        let cap = |s: &str| s.parse::<Capability>().unwrap();
        for served in [
            "shell",
            "exec:db-health",
            "files.read:/var/log",
            "files.write:/tmp",
            "forward:127.0.0.1:5432",
            "desktop.view",
            "desktop.control",
            "clipboard",
        ] {
            assert_eq!(cap(served).check_served("relay"), Ok(()), "{served}");
        }
        // The refusal a capability added before its channel would get.
        let err = NotServed { kind: "clipboard", place: "relay" };
        assert_eq!(err.to_string(), "clipboard is not available on this relay yet");
    }

    #[test]
    fn priorities_order_by_urgency() {
        assert!(Priority::P0 < Priority::P3);
        assert!(Priority::P1.is_urgent() && !Priority::P2.is_urgent());
        assert_eq!("p2".parse::<Priority>().unwrap(), Priority::P2);
        assert!("P4".parse::<Priority>().is_err());
    }

    #[test]
    fn roots_and_targets_with_control_characters_are_invalid() {
        for bad in ["/var/log\x1b[8m", "/tmp/\u{202e}x", "/a\nb"] {
            let cap = Capability::FilesRead { roots: vec![bad.into()] };
            assert!(cap.validate().unwrap_err().to_string().contains("control or invisible"), "{bad:?}");
        }
        let fwd = Capability::Forward { target: "db\u{200b}:5432".into() };
        assert!(fwd.validate().is_err());
        assert!(Capability::FilesRead { roots: vec!["/var/log/ünï".into()] }.validate().is_ok());
    }
}
