//! The forms `serve --listen` accepts. A bare `SocketAddr` refused what people type from habit
//! (`localhost:8080`, `:8080`, `8080`) with clap's generic "invalid socket address syntax", so
//! the first thing a new user did with the service was an error that did not say what to write.
//!
//! The short forms follow the common conventions, with the safe choice where they differ:
//! - `PORT` keeps the default host: loopback (`127.0.0.1:PORT`), reachable from this machine
//!   only. Nothing becomes reachable from the network by shortening the flag.
//! - `:PORT` is every interface (`0.0.0.0:PORT`), as in Go's `net/http` and many servers: the
//!   leading colon means "any host", and a container (the operator's Deployment) needs it.
//! - `HOST:PORT` with a host name is resolved once, at start; the first IPv4 address wins,
//!   so `localhost:8080` is `127.0.0.1:8080` whatever order the resolver lists it in.
//! - An IP address form (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`) is taken as is.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};

use thiserror::Error;

/// What the examples in every error say one can write.
const FORMS: &str = "write 8080 (127.0.0.1:8080), :8080 (every interface), 127.0.0.1:8080, \
                     [::1]:8080 or localhost:8080";

/// Why a `--listen` value was refused; each message ends with the forms that work. clap puts
/// the value and the flag in front (`invalid value 'X' for '--listen <LISTEN>': ...`); the
/// fields are for callers that print the error alone.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListenError {
    #[error("empty; {FORMS}")]
    Empty,
    #[error("the port must be a number from 0 to 65535 (0: any free port); {FORMS}")]
    BadPort { value: String },
    #[error("not PORT, :PORT or HOST:PORT; {FORMS}")]
    NoPort { value: String },
    #[error("cannot resolve host {host:?} ({reason}); {FORMS}")]
    Unresolved {
        value: String,
        host: String,
        reason: String,
    },
}

/// Parses a `--listen` value (see the module documentation for the forms).
pub fn parse_listen(value: &str) -> Result<SocketAddr, ListenError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ListenError::Empty);
    }
    let port = |p: &str| {
        p.parse::<u16>().map_err(|_| ListenError::BadPort {
            value: value.to_string(),
        })
    };
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            port(value)?,
        )));
    }
    if let Some(p) = value.strip_prefix(':').filter(|p| !p.contains(':')) {
        return Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            port(p)?,
        )));
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // A host name: `rsplit_once` keeps an unbracketed IPv6 literal (`::1`) from parsing as a
    // host `:` with port `1`; such a value has more than one colon and is refused below.
    let Some((host, p)) = value.rsplit_once(':') else {
        return Err(ListenError::NoPort {
            value: value.to_string(),
        });
    };
    if host.contains(':') || host.starts_with('[') {
        // An IPv6 literal the parse above refused: `::1:8080` needs brackets.
        return Err(ListenError::NoPort {
            value: value.to_string(),
        });
    }
    let port = port(p)?;
    let unresolved = |reason: String| ListenError::Unresolved {
        value: value.to_string(),
        host: host.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| unresolved(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| unresolved("no address".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_listen(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn short_forms_keep_loopback_unless_the_host_is_left_open() {
        assert_eq!(ok("8080"), "127.0.0.1:8080");
        assert_eq!(ok(":8080"), "0.0.0.0:8080");
        assert_eq!(ok("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(ok("0.0.0.0:9000"), "0.0.0.0:9000");
        assert_eq!(ok("[::1]:8080"), "[::1]:8080");
        assert_eq!(ok(" 8080 "), "127.0.0.1:8080");
        // Port 0: the OS picks a free one (the tests start servers this way).
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
    }

    #[test]
    fn localhost_resolves_to_ipv4_loopback() {
        assert_eq!(ok("localhost:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn refusals_say_what_to_write() {
        for (bad, want) in [
            ("", "empty"),
            ("70000", "port must be a number"),
            (":http", "port must be a number"),
            ("localhost", "not PORT, :PORT or HOST:PORT"),
            ("::1:8080", "not PORT, :PORT or HOST:PORT"),
            ("localhost:80x", "port must be a number"),
            (
                "no-such-host.invalid:8080",
                "cannot resolve host \"no-such-host.invalid\"",
            ),
        ] {
            let e = parse_listen(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"))
                .to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
            assert!(e.contains(":8080 (every interface)"), "{bad:?}: {e}");
        }
    }
}
