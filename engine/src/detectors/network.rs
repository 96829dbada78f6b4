//! Exfiltration targets: addresses data could be sent to (IPv4, IPv6, URL).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::{Detector, DetectorCategory};

/// The `ipv4` detector ([`DetectorKind::Ipv4`](super::DetectorKind::Ipv4)).
pub(super) const IPV4: Detector = Detector {
    placeholder: "IP_ADDRESS",
    category: DetectorCategory::Exfiltration,
    summary: "parsed as an address; not version strings",
    // Takes the whole dotted run so refine sees `1.2.3.4.5` and rejects it.
    candidate_pattern: r"\b[0-9]+(?:\.[0-9]+){3,}\b",
    refine: refine_ipv4,
};

/// The `ipv6` detector ([`DetectorKind::Ipv6`](super::DetectorKind::Ipv6)).
pub(super) const IPV6: Detector = Detector {
    placeholder: "IP_ADDRESS",
    category: DetectorCategory::Exfiltration,
    summary: "parsed as an address; not code like `std::fmt`",
    // Takes neighbouring word characters too, so refine can reject `std::fmt`-like code.
    candidate_pattern: r"[0-9A-Za-z_]*:[0-9A-Za-z_]*:[0-9A-Za-z_:.]*",
    refine: refine_ipv6,
};

/// The `url` detector ([`DetectorKind::Url`](super::DetectorKind::Url)).
pub(super) const URL: Detector = Detector {
    placeholder: "URL",
    category: DetectorCategory::Exfiltration,
    summary: "http(s)/ftp and `www.` hosts",
    candidate_pattern: r#"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'`]+"#,
    refine: refine_url,
};

fn refine_ipv4(c: &[u8]) -> Option<Range<usize>> {
    let s = std::str::from_utf8(c).ok()?;
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let parts_ok = parts.iter().all(|p| {
        !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    });
    if !parts_ok {
        return None;
    }
    s.parse::<Ipv4Addr>().ok()?;
    Some(0..c.len())
}

fn ipv6_valid(s: &[u8]) -> bool {
    if !s
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        || s.iter().filter(|&&b| b == b':').count() < 2
    {
        return false;
    }
    let Ok(text) = std::str::from_utf8(s) else {
        return false;
    };
    let Ok(addr) = text.parse::<Ipv6Addr>() else {
        return false;
    };
    // "a::b" parses, but in prompts it is far more often code (`a::b`) than an address. Require
    // some substance: a 3+ digit group, or 3+ groups, or the well-known loopback.
    let groups: Vec<&str> = text.split(':').filter(|g| !g.is_empty()).collect();
    let time_like = !text.contains("::")
        && groups.len() <= 3
        && groups
            .iter()
            .all(|g| g.len() <= 2 && g.bytes().all(|b| b.is_ascii_digit()));
    let substantial =
        groups.iter().any(|g| g.len() >= 3) || groups.len() >= 3 || addr == Ipv6Addr::LOCALHOST;
    substantial && !time_like
}

fn refine_ipv6(c: &[u8]) -> Option<Range<usize>> {
    let end = c.len() - c.iter().rev().take_while(|&&b| b == b'.').count();
    if ipv6_valid(&c[..end]) {
        return Some(0..end);
    }
    // A label glued on with one colon ("addr:2001:db8::1"): retry after it, but only when the
    // label is clearly a word, so `ab::cd`-style code is not split into an address.
    let colon = c[..end].iter().position(|&b| b == b':')?;
    let label = &c[..colon];
    let single = c.get(colon + 1) != Some(&b':');
    let wordy = label
        .iter()
        .any(|b| b.is_ascii_alphabetic() && !b.is_ascii_hexdigit());
    if single && wordy && ipv6_valid(&c[colon + 1..end]) {
        return Some(colon + 1..end);
    }
    None
}

fn refine_url(c: &[u8]) -> Option<Range<usize>> {
    let mut end = c.len();
    while end > 0 {
        let last = c[end - 1];
        if b".,;:!?'\"]>".contains(&last) {
            end -= 1;
        } else if last == b')' {
            // Keep a closing paren that balances one inside the URL (Wikipedia-style links).
            let opens = c[..end].iter().filter(|&&b| b == b'(').count();
            let closes = c[..end].iter().filter(|&&b| b == b')').count();
            if closes > opens {
                end -= 1;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    let s = &c[..end];
    let lower = s.to_ascii_lowercase();
    let (host_start, www) = if let Some(p) = lower.windows(3).position(|w| w == b"://") {
        let scheme = &lower[..p];
        if !(scheme == b"http" || scheme == b"https" || scheme == b"ftp") {
            return None;
        }
        (p + 3, false)
    } else if lower.starts_with(b"www.") {
        (0, true)
    } else {
        return None;
    };
    let rest = &s[host_start..];
    let host_len = rest
        .iter()
        .position(|b| b"/?#".contains(b))
        .unwrap_or(rest.len());
    let authority = &rest[..host_len];
    // Drop userinfo and port; what remains must look like a host name or an IP literal.
    let host = authority.rsplit(|&b| b == b'@').next().unwrap_or(authority);
    let host_ok = !host.is_empty()
        && host.iter().any(u8::is_ascii_alphanumeric)
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !host_ok {
        return None;
    }
    if www {
        let name = host.split(|&b| b == b':').next().unwrap_or(host);
        let labels: Vec<&[u8]> = name.split(|&b| b == b'.').collect();
        let tld_ok = labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
        if labels.len() < 3 || labels.iter().any(|l| l.is_empty()) || !tld_ok {
            return None;
        }
    }
    Some(0..end)
}

/// Examples the registry's tests run through every detector of this family.
#[cfg(test)]
pub(super) mod cases {
    use super::super::DetectorKind;

    /// (text given to the detector, value it must report) — every entry is a positive.
    pub(in super::super) fn positives(kind: DetectorKind) -> Vec<(String, String)> {
        let same = |v: &[String]| v.iter().map(|s| (s.clone(), s.clone())).collect::<Vec<_>>();
        let s = |x: &str| x.to_string();
        match kind {
            DetectorKind::Ipv4 => same(&[s("192.168.1.10"), s("10.0.0.1"), s("8.8.8.8")]),
            DetectorKind::Ipv6 => same(&[
                s("2001:db8::1"),
                s("fe80::1ff:fe23:4567:890a"),
                s("2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
                s("::1"),
                s("::ffff:192.0.2.128"),
            ]),
            DetectorKind::Url => same(&[
                s("https://example.com/path?q=1"),
                s("http://evil.test:8080/x"),
                s("ftp://files.example.org/a.txt"),
                s("www.example.com/page"),
                s("https://en.wikipedia.org/wiki/Foo_(bar)"),
            ]),
            _ => Vec::new(),
        }
    }

    /// Texts the detector must not report, fed through the full find-then-refine flow.
    pub(in super::super) fn negatives(kind: DetectorKind) -> Vec<String> {
        let s = |x: &str| x.to_string();
        match kind {
            DetectorKind::Ipv4 => vec![
                s("1.2.3.4.5"),
                s("10.0.0.256"),
                s("192.168.01.1"),
                s("v1.2.3"),
                s("version 2.10.3.1.7"),
            ],
            DetectorKind::Ipv6 => vec![
                s("12:30:45"),
                s("use std::fmt::Display"),
                s("a::b"),
                s("00:1A:2B:3C:4D:5E"),
                s("key:value:other"),
                s("ratio 1:2:3"),
            ],
            DetectorKind::Url => vec![
                s("http://"),
                s("www.example"),
                s("mailto:x@y.z"),
                s("gopher://x"),
            ],
            _ => Vec::new(),
        }
    }
}
