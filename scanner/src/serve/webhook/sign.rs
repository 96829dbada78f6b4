//! Webhook signatures: `X-PD-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`.
//!
//! The timestamp is inside the MAC so a receiver that rejects stale timestamps (five minutes is
//! the documented window) also rejects a captured request replayed later: the attacker cannot
//! refresh the timestamp without the key. During a key rollover the header carries one
//! signature per key, comma-separated, current key first; a receiver accepts the request when
//! any of them verifies with a key it holds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every signature in the header.
pub const SCHEME: &str = "sha256=";

/// The MAC of one key over `"{timestamp}.{body}"`.
fn mac(key: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// `sha256=<hex>` for one key.
pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "{SCHEME}{}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

/// The `X-PD-Signature` value: one signature per key, in the order given (current first).
pub fn header(keys: &[Vec<u8>], timestamp: &str, body: &[u8]) -> String {
    keys.iter()
        .map(|k| signature(k, timestamp, body))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("the timestamp is {skew} s away from now, over the tolerance of {tolerance} s (a stale or replayed request)")]
    Stale { skew: u64, tolerance: u64 },
    #[error("no `sha256=<hex>` signature in the header")]
    NoSignature,
    #[error("no signature matches the key")]
    Mismatch,
}

/// Checks an `X-PD-Signature` header against one key: the timestamp within `tolerance` seconds
/// of `now`, and any of the signatures equal to ours. The comparison is constant-time (the
/// `hmac` crate's `verify_slice`), so timing reveals nothing about the expected value.
pub fn verify(
    key: &[u8],
    timestamp: &str,
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), VerifyError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now.abs_diff(ts);
    if skew > tolerance {
        return Err(VerifyError::Stale { skew, tolerance });
    }
    let candidates: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix(SCHEME))
        .filter_map(|h| hex::decode(h).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let mut ok = false;
    for c in &candidates {
        // Every candidate is checked (no early exit), constant-time each.
        ok |= mac(key, timestamp.trim(), body).verify_slice(c).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently with Python's hmac.
        let s = signature(b"key", "1700000000", b"{}");
        assert_eq!(
            s,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_eq!(
            verify(b"key", "1700000000", &s, b"{}", 1_700_000_100, 300),
            Ok(())
        );
    }

    #[test]
    fn rotation_either_key_verifies() {
        let keys = vec![b"new".to_vec(), b"old".to_vec()];
        let h = header(&keys, "100", b"body");
        assert_eq!(h.matches("sha256=").count(), 2);
        assert_eq!(verify(b"old", "100", &h, b"body", 100, 300), Ok(()));
        assert_eq!(verify(b"new", "100", &h, b"body", 100, 300), Ok(()));
        assert_eq!(
            verify(b"other", "100", &h, b"body", 100, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tampering_and_staleness_are_refused() {
        let h = header(&[b"k".to_vec()], "100", b"body");
        assert_eq!(
            verify(b"k", "100", &h, b"bodY", 100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"k", "101", &h, b"body", 101, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"k", "100", &h, b"body", 401, 300),
            Err(VerifyError::Stale {
                skew: 301,
                tolerance: 300
            })
        );
        assert_eq!(
            verify(b"k", "x", &h, b"body", 100, 300),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(b"k", "100", "md5=00", b"body", 100, 300),
            Err(VerifyError::NoSignature)
        );
    }
}
