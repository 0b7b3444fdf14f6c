//! The agent's allowlist of named diagnostic scripts (`assist-agent run --scripts FILE`).
//!
//! A script is a program path, fixed arguments and a timeout, all from the agent's own
//! configuration: the engineer sends only the name, so nothing they type reaches a shell
//! or an argument list. A name that is not in the list is refused. Running the script
//! (pipes, never a shell; killed at its timeout) is [`super::channel`]'s work.
//!
//! The file is JSON:
//!
//! ```json
//! { "scripts": [
//!     { "name": "disk-usage", "path": "/usr/bin/df", "args": ["-h"], "timeout_secs": 30 }
//! ] }
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One allowed script.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// What the engineer asks for (`exec:NAME`): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The program, an absolute path.
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    /// Killed after this long. Default 60 seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    60
}

impl Script {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// argv: the program, then the configured arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.path.display().to_string()).chain(self.args.iter().cloned()).collect()
    }
}

/// The allowlist. Empty unless configured: then every `exec` channel is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    pub scripts: Vec<Script>,
}

impl Scripts {
    /// Reads and checks a scripts file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Scripts = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (i, script) in s.scripts.iter().enumerate() {
            assist_proto::caps::Capability::Exec { scripts: vec![script.name.clone()] }
                .validate()
                .map_err(|e| e.to_string())?;
            if !script.path.is_absolute() {
                return Err(format!("script {}: path must be absolute", script.name));
            }
            if s.scripts[..i].iter().any(|o| o.name == script.name) {
                return Err(format!("script {} is listed twice", script.name));
            }
        }
        Ok(s)
    }

    pub fn get(&self, name: &str) -> Option<&Script> {
        self.scripts.iter().find(|s| s.name == name)
    }

    /// The names engineers may ask for, as the agent tells its relay.
    pub fn names(&self) -> Vec<String> {
        self.scripts.iter().map(|s| s.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_and_bad_ones_are_refused() {
        let s = Scripts::parse(
            r#"{"scripts":[{"name":"disk-usage","path":"/usr/bin/df","args":["-h","/"]},
                          {"name":"db-health","path":"/opt/erp/bin/check","timeout_secs":5}]}"#,
        )
        .unwrap();
        assert_eq!(s.get("disk-usage").unwrap().argv(), ["/usr/bin/df", "-h", "/"]);
        assert_eq!(s.get("db-health").unwrap().timeout(), Duration::from_secs(5));
        assert!(s.get("rm").is_none());
        for bad in [
            r#"{"scripts":[{"name":"a;b","path":"/bin/true"}]}"#,
            r#"{"scripts":[{"name":"a","path":"bin/true"}]}"#,
            r#"{"scripts":[{"name":"a","path":"/bin/true"},{"name":"a","path":"/bin/false"}]}"#,
            r#"{"scripts":[{"name":"a","path":"/bin/true","shell":true}]}"#,
        ] {
            assert!(Scripts::parse(bad).is_err(), "{bad}");
        }
    }
}
