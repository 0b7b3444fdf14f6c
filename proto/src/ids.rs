//! Identifier newtypes. They are plain strings on the wire (`#[serde(transparent)]`) but
//! distinct types in code, so a session id cannot be passed where an agent name is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// A session, for example `s-3f9c0a1b2d4e`.
    SessionId
);
id_type!(
    /// An agent's unique name, chosen at enrollment (`erp-db01`).
    AgentName
);
id_type!(
    /// An organisation (tenant) name (`vendor`, `acme`).
    OrgName
);
id_type!(
    /// A user's login name (`alice`).
    UserName
);
id_type!(
    /// A maintenance window, for example `w-1a2b3c4d`.
    WindowId
);

/// A name that [`validate_name`] refused; `kind` says what it was to name (`agent`, `user`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} name {name:?}: use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct BadName {
    pub kind: String,
    pub name: String,
}

/// Checks a name given by a person (organisation, user, agent): 1 to 63 characters of
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn validate_name(kind: &str, name: &str) -> Result<(), BadName> {
    let ok_len = (1..=63).contains(&name.len());
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(BadName { kind: kind.to_owned(), name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "erp-db01", "acme.corp", "A_1"] {
            assert!(validate_name("agent", good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "x/y", "ä", &"x".repeat(64)] {
            assert!(validate_name("agent", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = SessionId::new("s-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"s-1\"");
    }
}
