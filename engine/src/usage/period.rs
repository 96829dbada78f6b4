//! Usage periods: calendar months in UTC, named `YYYY-MM`.
//!
//! Months, not rolling windows, because that is how quotas are bought and reported; UTC so every
//! pod, the operator and the Tenant status agree on when a month ends whatever their zone.
//! Done by hand (Howard Hinnant's civil-date algorithms) rather than with a date crate: two
//! conversions are all that is needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The calendar month containing `t` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub year: i64,
    /// 1..=12
    pub month: u32,
}

impl Period {
    /// The month containing `t`; instants before 1970 count as January 1970.
    pub fn of(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let (year, month, _) = civil_from_days(days);
        Period { year, month }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month >= 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Midnight UTC on the first day of this month.
    pub fn start(self) -> SystemTime {
        let days = days_from_civil(self.year, self.month, 1);
        let secs = u64::try_from(days.max(0)).unwrap_or(0) * 86_400;
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// How long from `now` until the next month begins (zero if `now` is past it).
    pub fn remaining(self, now: SystemTime) -> Duration {
        self.next()
            .start()
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let year = y.parse().ok()?;
        let month = m.parse().ok()?;
        (1..=12).contains(&month).then_some(Period { year, month })
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Howard Hinnant's `civil_from_days`: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Howard Hinnant's `days_from_civil`, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn months_and_their_boundaries() {
        // 2026-11-30T23:59:59Z and one second later.
        let last = at(1_796_083_199);
        assert_eq!(Period::of(last).to_string(), "2026-11");
        assert_eq!(Period::of(at(1_796_083_200)).to_string(), "2026-12");
        assert_eq!(Period::of(last).remaining(last), Duration::from_secs(1));
        assert_eq!(
            Period::parse("2026-12").map(|p| p.next().to_string()),
            Some("2027-01".to_string())
        );
        assert_eq!(
            Period::parse("2024-02").map(|p| p.start()),
            Some(at(1_706_745_600))
        );
        for bad in ["2026-13", "2026-00", "26-11", "2026-1", "x"] {
            assert_eq!(Period::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn start_is_the_inverse_of_of_for_many_months() {
        let mut p = Period::of(UNIX_EPOCH);
        for _ in 0..2_000 {
            assert_eq!(Period::of(p.start()), p);
            assert_eq!(Period::of(p.next().start() - Duration::from_secs(1)), p);
            p = p.next();
        }
    }
}
