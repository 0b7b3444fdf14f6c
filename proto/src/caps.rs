//! Capabilities, ticket priorities, roles and consent modes.
//!
//! A capability has a textual form used on the command line and in listings
//! (`shell`, `exec:db-health,disk-usage`, `files.read:/var/log/erp`, `forward:db:5432`)
//! and a typed form on the wire. Only `shell` is served by the relay today; the others are
//! defined so that grants and requests already carry them.

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
}

impl fmt::Display for ConsentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsentMode::Prompt => "prompt",
            ConsentMode::Approver => "approver",
        })
    }
}

impl FromStr for ConsentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prompt" => Ok(ConsentMode::Prompt),
            "approver" => Ok(ConsentMode::Approver),
            _ => Err(format!("invalid consent mode {s:?}: expected prompt or approver")),
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
    fn priorities_order_by_urgency() {
        assert!(Priority::P0 < Priority::P3);
        assert!(Priority::P1.is_urgent() && !Priority::P2.is_urgent());
        assert_eq!("p2".parse::<Priority>().unwrap(), Priority::P2);
        assert!("P4".parse::<Priority>().is_err());
    }
}
