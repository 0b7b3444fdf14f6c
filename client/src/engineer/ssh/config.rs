//! `assist ssh-config`: the block for `~/.ssh/config` that sends `ssh NAME.assist` (and
//! `scp`, `sftp`, `rsync -e ssh`, editors' remote modes) through `assist ssh-proxy`, with
//! the agents' host keys pinned so that ssh never asks to trust them.
//!
//! It only prints text; it changes no ssh file. The host keys it names are made (and
//! pinned in assist's own known_hosts file) by [`super::hostkey`].

use super::hostkey::{DOMAIN, HostKey};
use assist_proto::ids::AgentName;
use std::fmt::Write;
use std::path::Path;

/// A word for ssh's configuration: quoted when it holds a space or a quote.
fn word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.contains([' ', '"', '\t']) { format!("\"{}\"", s.replace('"', "\\\"")) } else { s }
}

/// The block: help as comments, then `Host *.assist` with the proxy and the pinning.
/// `config_dir` is named in the ProxyCommand when it is not the default one.
pub fn block(
    assist: &Path,
    config_dir: Option<&Path>,
    known_hosts: &Path,
    agents: &[(AgentName, HostKey)],
) -> String {
    let mut out = String::new();
    let dir = config_dir.map(|d| format!(" --config-dir {}", word(d))).unwrap_or_default();
    let _ = writeln!(out, "# assist: OpenSSH's tools through assist. Add this to ~/.ssh/config, then");
    let _ = writeln!(out, "#   ssh AGENT{DOMAIN}              a shell (or: ssh AGENT{DOMAIN} COMMAND)");
    let _ = writeln!(
        out,
        "#   scp FILE AGENT{DOMAIN}:/path   sftp AGENT{DOMAIN}   rsync -e ssh DIR AGENT{DOMAIN}:/path"
    );
    let _ = writeln!(out, "#   ssh -N -L 5432:db:5432 AGENT{DOMAIN}   a port forward");
    let _ = writeln!(out, "# A new session needs a ticket and a reason, from the environment:");
    let _ =
        writeln!(out, "#   ASSIST_TICKET=INC-1042 ASSIST_REASON='...' [ASSIST_PRIORITY=P1] [ASSIST_FOR=2h]");
    let _ = writeln!(out, "#   ASSIST_CAPABILITIES='shell files.read:/srv files.write:/srv forward:db:5432'");
    let _ = writeln!(out, "# (default: shell); or work in a live session of yours: ASSIST_SESSION=S.");
    let _ = writeln!(out, "# ssh waits while the customer decides; what they do not grant is refused.");
    let _ = writeln!(out, "Host *{DOMAIN}");
    let _ = writeln!(out, "    ProxyCommand {}{dir} ssh-proxy %h", word(assist));
    let _ = writeln!(out, "    User assist");
    let _ = writeln!(out, "    UserKnownHostsFile {}", word(known_hosts));
    let _ = writeln!(out, "    StrictHostKeyChecking yes");
    let _ = writeln!(out, "    CheckHostIP no");
    let _ = writeln!(out, "    UpdateHostKeys no");
    if !agents.is_empty() {
        let _ = writeln!(out, "# Host keys pinned in that file (made on first use for other agents):");
        for (agent, key) in agents {
            let _ = writeln!(out, "#   {agent}{DOMAIN}  {}", key.fingerprint());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_names_the_proxy_and_the_pinned_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::engineer::config::ConfigDir::locate(Some(dir.path().to_owned())).unwrap();
        let keys = super::super::hostkey::HostKeys::new(&cfg);
        let agent = AgentName::new("erp");
        let key = keys.for_agent(&agent).unwrap();
        let fp = key.fingerprint();
        let text = block(
            Path::new("/usr/bin/assist"),
            Some(Path::new("/my dir")),
            &keys.known_hosts(),
            &[(agent, key)],
        );
        assert!(text.contains("Host *.assist\n"), "{text}");
        assert!(
            text.contains("ProxyCommand /usr/bin/assist --config-dir \"/my dir\" ssh-proxy %h\n"),
            "{text}"
        );
        assert!(text.contains(&format!("UserKnownHostsFile {}\n", keys.known_hosts().display())), "{text}");
        assert!(text.contains(&format!("erp.assist  {fp}")), "{text}");
    }
}
