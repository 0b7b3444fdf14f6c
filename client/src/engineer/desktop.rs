//! `assist desktop`: the address of the console's desktop viewer with the request filled
//! in (agent, ticket, priority, reason, control, clipboard, duration), which the engineer's browser
//! opens.
//!
//! The request itself is made by that page, on its own link to the relay (the console's
//! `/api/v1/desktop` socket, signed in with the engineer's console session): the picture
//! needs a browser (WebCodecs), and a session belongs to the link that asked for it, so
//! closing the tab ends it as `assist shell`'s end when it exits. The relay checks the
//! request exactly as it checks `assist shell`'s, including whether the agent has a
//! display. This module builds the address and does no I/O.

use assist_proto::caps::Priority;

/// What `assist desktop` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesktopAsk {
    pub agent: String,
    pub ticket: String,
    pub priority: Priority,
    pub reason: String,
    /// Ask for the mouse and keyboard too (`desktop.control`), not only the picture.
    pub control: bool,
    /// Ask for the customer's clipboard too (`clipboard`), shared both ways as text.
    pub clipboard: bool,
    pub minutes: u64,
}

/// The console's address for `relay` (`HOST:PORT` of its QUIC side): the same host, the
/// console's default port 8443.
pub fn default_console(relay: &str) -> String {
    let host = match relay.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => relay,
    };
    format!("https://{host}:8443")
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The viewer's address: `CONSOLE/#desktop/` and the request as a query, encoded once
/// more because the page decodes the part after the `#desktop/` before reading it.
pub fn viewer_url(console: &str, ask: &DesktopAsk) -> String {
    let query = [
        ("agent", ask.agent.clone()),
        ("ticket", ask.ticket.clone()),
        ("priority", ask.priority.to_string().to_lowercase()),
        ("reason", ask.reason.clone()),
        ("control", if ask.control { "1" } else { "0" }.to_owned()),
        ("clipboard", if ask.clipboard { "1" } else { "0" }.to_owned()),
        ("minutes", ask.minutes.to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    format!("{}/#desktop/{}", console.trim_end_matches('/'), encode(&query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_carries_the_request_through_the_pages_decoding() {
        let ask = DesktopAsk {
            agent: "erp-ws01".into(),
            ticket: "INC-1 & 2".into(),
            priority: Priority::P1,
            reason: "dialog #7 = 100%".into(),
            control: true,
            clipboard: true,
            minutes: 30,
        };
        let url = viewer_url("https://relay.example:8443/", &ask);
        let (base, hash) = url.split_once("#desktop/").unwrap();
        assert_eq!(base, "https://relay.example:8443/");
        assert!(!hash.contains('&') && !hash.contains('#') && !hash.contains(' '), "{hash}");
        // What the page does: decode once, then read it as a query.
        let fields: Vec<(String, String)> = decode(hash)
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("agent"), "erp-ws01");
        assert_eq!(get("ticket"), "INC-1 & 2");
        assert_eq!(get("reason"), "dialog #7 = 100%");
        assert_eq!((get("priority"), get("control"), get("minutes")), ("p1", "1", "30"));
        assert_eq!(get("clipboard"), "1");
    }

    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_console_defaults_to_the_relays_host() {
        assert_eq!(default_console("relay.example:4433"), "https://relay.example:8443");
        assert_eq!(default_console("[::1]:4433"), "https://[::1]:8443");
        assert_eq!(default_console("relay.example"), "https://relay.example:8443");
    }
}
