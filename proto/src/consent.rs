//! Who consented to a grant: a typed [`ConsentSource`].
//!
//! The relay names the source by constructing a variant; the agent decides what it accepts
//! by matching on the variant. On the wire and on disk the source is the same plain string
//! as before this type existed (`bob`, `prompt@erp-db01`, `window:w-1a2b3c4d`), so grants,
//! recordings and audit rows signed earlier keep their exact bytes and still verify. A
//! string that fits none of the three forms is refused when it is parsed.
//!
//! This module does not decide what a consent mode accepts: the agent does
//! (`client/src/agent/grants.rs`), as the relay does when it answers a request.

use crate::ids::{AgentName, BadName, UserName, WindowId, validate_name};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

const PROMPT: &str = "prompt@";
const WINDOW: &str = "window:";

/// Who consented: an approver, the agent's own prompt, or a maintenance window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ConsentSource {
    /// An approver of the agent's organisation, by user name (`bob`).
    Approver(UserName),
    /// The customer at the agent's own prompt (`prompt@AGENT`).
    Prompt(AgentName),
    /// A maintenance window, by id (`window:ID`).
    Window(WindowId),
}

/// A consent source string that fits none of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} names no consent source (an approver, prompt@AGENT or window:ID): {why}")]
pub struct BadConsentSource {
    pub value: String,
    pub why: String,
}

impl fmt::Display for ConsentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsentSource::Approver(user) => f.write_str(user.as_str()),
            ConsentSource::Prompt(agent) => write!(f, "{PROMPT}{agent}"),
            ConsentSource::Window(id) => write!(f, "{WINDOW}{id}"),
        }
    }
}

impl FromStr for ConsentSource {
    type Err = BadConsentSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |e: BadName| BadConsentSource { value: s.to_owned(), why: e.to_string() };
        if let Some(agent) = s.strip_prefix(PROMPT) {
            validate_name("agent", agent).map_err(bad)?;
            Ok(ConsentSource::Prompt(AgentName::new(agent)))
        } else if let Some(id) = s.strip_prefix(WINDOW) {
            validate_name("window", id).map_err(bad)?;
            Ok(ConsentSource::Window(WindowId::new(id)))
        } else {
            validate_name("user", s).map_err(bad)?;
            Ok(ConsentSource::Approver(UserName::new(s)))
        }
    }
}

impl From<ConsentSource> for String {
    fn from(c: ConsentSource) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for ConsentSource {
    type Error = BadConsentSource;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: ConsentSource) {
        assert_eq!(text.parse::<ConsentSource>().unwrap(), expected, "{text}");
        assert_eq!(expected.to_string(), text);
        let json = serde_json::to_string(&expected).unwrap();
        assert_eq!(json, format!("\"{text}\""), "the wire form is the plain string");
        assert_eq!(serde_json::from_str::<ConsentSource>(&json).unwrap(), expected);
    }

    #[test]
    fn the_three_forms_round_trip_as_the_strings_they_always_were() {
        check("bob", ConsentSource::Approver("bob".into()));
        check("prompt@erp-db01", ConsentSource::Prompt("erp-db01".into()));
        check("window:w-1a2b3c4d", ConsentSource::Window("w-1a2b3c4d".into()));
    }

    #[test]
    fn a_value_that_fits_no_form_is_refused_when_parsed() {
        for bad in ["", "prompt@", "window:", "prompt@a b", "window:x/y", "bob smith", "-bob", "w@x", "x:y"] {
            let err = bad.parse::<ConsentSource>().unwrap_err();
            assert_eq!(err.value, bad);
            assert!(serde_json::from_value::<ConsentSource>(bad.into()).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ConsentSource>("7").is_err());
    }
}
