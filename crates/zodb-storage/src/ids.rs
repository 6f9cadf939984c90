//! Object ids and transaction ids.
//!
//! Both are 8 bytes compared as big-endian unsigned integers, exactly as
//! ZODB compares its byte strings. A [`Tid`] is also a ZODB `TimeStamp`:
//! the first four bytes count minutes since 1900-01-01 in a calendar where
//! every month has 31 days, the last four are the fraction of the minute in
//! units of 60/2^32 seconds (`docs/spec/filestorage-format.md` §6).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// An object id. Oid 0 is the root object.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub u64);

impl Oid {
    /// The root object's id.
    pub const ROOT: Oid = Oid(0);

    pub fn from_bytes(bytes: [u8; 8]) -> Oid {
        Oid(u64::from_be_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Parses an oid from a slice that must be exactly 8 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Oid> {
        Some(Oid::from_bytes(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid(0x{:016x})", self.0)
    }
}

impl fmt::Display for Oid {
    /// Sixteen hex digits, as `bbru-zeo dump` and the logs print oids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A transaction id, which is also the serial of every record the
/// transaction wrote. Ordered as time goes on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub u64);

/// Seconds per unit of the low half of a tid, computed as the C
/// implementation of `persistent.TimeStamp` does (`SCONV`), so that tids made
/// from the same clock reading agree with Python's to the unit.
const SECONDS_PER_UNIT: f64 = 60.0 / 65536.0 / 65536.0;

impl Tid {
    /// `z64`: before any transaction. Used as the "no previous serial" of a
    /// new object.
    pub const ZERO: Tid = Tid(0);
    /// ZODB's `maxtid` (`7fff…ff`): "the current revision" for `load_before`.
    pub const MAX: Tid = Tid(0x7fff_ffff_ffff_ffff);

    pub fn from_bytes(bytes: [u8; 8]) -> Tid {
        Tid(u64::from_be_bytes(bytes))
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Tid> {
        Some(Tid::from_bytes(bytes.try_into().ok()?))
    }

    /// The tid of a calendar time (UTC). `second` may carry a fraction.
    pub fn from_parts(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: f64) -> Tid {
        let minutes =
            ((((i64::from(year) - 1900) * 12 + i64::from(month) - 1) * 31 + i64::from(day) - 1)
                * 24
                + i64::from(hour))
                * 60
                + i64::from(minute);
        let high = minutes.clamp(0, i64::from(u32::MAX)) as u64;
        // `as` saturates, which is what we want for an out-of-range second.
        let low = (second / SECONDS_PER_UNIT) as u32;
        Tid((high << 32) | u64::from(low))
    }

    /// The tid of a point in time given as seconds since the Unix epoch, the
    /// way Python computes `TimeStamp(*(gmtime(t)[:5] + (t % 60,)))`.
    pub fn from_unix_seconds(seconds: f64) -> Tid {
        let whole = seconds.floor();
        let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(whole as i64) else {
            return if seconds < 0.0 {
                Tid::ZERO
            } else {
                Tid(u64::MAX)
            };
        };
        let second = f64::from(dt.second()) + (seconds - whole);
        Tid::from_parts(
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            second,
        )
    }

    /// The tid of a system time.
    pub fn from_system_time(at: SystemTime) -> Tid {
        let seconds = match at.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        Tid::from_unix_seconds(seconds)
    }

    /// The tid of the current time; not yet made later than anything.
    pub fn now() -> Tid {
        Tid::from_system_time(SystemTime::now())
    }

    /// The calendar parts of this tid: year, month, day, hour, minute, and
    /// seconds with their fraction.
    pub fn parts(self) -> (i32, u8, u8, u8, u8, f64) {
        let a = self.0 >> 32;
        let b = self.0 & 0xffff_ffff;
        let minute = (a % 60) as u8;
        let hour = (a / 60 % 24) as u8;
        let day = (a / 1440 % 31 + 1) as u8;
        let month = (a / 44640 % 12 + 1) as u8;
        let year = (a / 535_680) as i32 + 1900;
        (year, month, day, hour, minute, b as f64 * SECONDS_PER_UNIT)
    }

    /// Seconds since the Unix epoch (`TimeStamp.timeTime()`). Days past the
    /// end of a real month (the tid calendar has 31 days in every month) roll
    /// into the next month, as Python's `timegm` does.
    pub fn unix_seconds(self) -> f64 {
        let (year, month, day, hour, minute, second) = self.parts();
        let days = days_from_civil(year, month, 1) + i64::from(day) - 1;
        (days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60) as f64 + second
    }

    /// The smallest tid that is later than both `self` and `other`: `self`
    /// when it already is, else `other` plus one unit, carrying into the next
    /// real calendar minute as the C `TimeStamp.laterThan` does.
    pub fn later_than(self, other: Tid) -> Tid {
        if self > other {
            return self;
        }
        let low = other.0 & 0xffff_ffff;
        if low < 0xffff_ffff {
            return Tid(other.0 + 1);
        }
        let (mut year, mut month, mut day, mut hour, mut minute, _) = other.parts();
        minute += 1;
        if minute == 60 {
            minute = 0;
            hour += 1;
            if hour == 24 {
                hour = 0;
                day += 1;
                if day > days_in_month(year, month) {
                    day = 1;
                    month += 1;
                    if month > 12 {
                        month = 1;
                        year += 1;
                    }
                }
            }
        }
        Tid::from_parts(year, month, day, hour, minute, 0.0)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar. Written here (Howard Hinnant's `days_from_civil`) because the
/// tid calendar can name days such as February 31 that date libraries
/// refuse, while Python's `timegm` simply counts on from the first.
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid(0x{:016x})", self.0)
    }
}

impl fmt::Display for Tid {
    /// Sixteen hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Issues strictly increasing tids from the clock, as `BaseStorage` does:
/// a new tid is the clock's, or one unit past the last one when the clock
/// has not moved on (or went back).
#[derive(Debug, Clone, Copy)]
pub struct TidClock {
    last: Tid,
}

impl TidClock {
    pub fn new(last: Tid) -> TidClock {
        TidClock { last }
    }

    pub fn last(&self) -> Tid {
        self.last
    }

    /// Records a tid that was used (e.g. given by a caller), so later ones
    /// come after it.
    pub fn observe(&mut self, tid: Tid) {
        if tid > self.last {
            self.last = tid;
        }
    }

    /// The next tid from the current time.
    pub fn next_tid(&mut self) -> Tid {
        self.next_at(Tid::now())
    }

    /// The next tid given a clock reading; exposed for tests of a clock that
    /// goes back.
    pub fn next_at(&mut self, now: Tid) -> Tid {
        let tid = now.later_than(self.last);
        self.last = tid;
        tid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(parts: (i32, u8, u8, u8, u8, f64), hex: u64) {
        let (y, mo, d, h, mi, s) = parts;
        assert_eq!(Tid::from_parts(y, mo, d, h, mi, s), Tid(hex), "{parts:?}");
    }

    #[test]
    fn timestamps_observed_from_python() {
        check((2026, 1, 2, 3, 4, 5.5), 0x0405_ed58_1777_7777);
        check((2026, 1, 2, 3, 11, 17.25), 0x0405_ed5f_4999_9999);
        check((2026, 3, 1, 12, 1, 30.5), 0x0407_4691_8222_2222);
    }

    #[test]
    fn unix_seconds_round_trip() {
        // 2026-01-02 03:10:08 UTC, the fixture's pack time.
        let tid = Tid::from_unix_seconds(1_767_323_408.0);
        assert_eq!(tid.parts().0, 2026);
        assert!((tid.unix_seconds() - 1_767_323_408.0).abs() < 1e-6);
        let t = Tid(0x0405_ed58_1777_7777);
        let back = Tid::from_unix_seconds(t.unix_seconds());
        assert!(back.0.abs_diff(t.0) <= 1);
    }

    #[test]
    fn later_than_carries_into_the_next_calendar_minute() {
        assert_eq!(Tid(5).later_than(Tid(9)), Tid(10));
        assert_eq!(Tid(20).later_than(Tid(9)), Tid(20));
        assert_eq!(
            Tid(0).later_than(Tid(0x0405_ed58_ffff_ffff)),
            Tid(0x0405_ed59_0000_0000)
        );
        // 2026-01-31 23:59:59.99… -> 2026-02-01 00:00
        assert_eq!(
            Tid(0).later_than(Tid(0x0406_955f_ffff_ffff)),
            Tid(0x0406_9560_0000_0000)
        );
        let dec31 = Tid::from_parts(2026, 12, 31, 23, 59, 59.999_999_999);
        let next = Tid(0).later_than(Tid(dec31.0 | 0xffff_ffff));
        assert_eq!(next.parts().0, 2027);
        assert_eq!((next.parts().1, next.parts().2), (1, 1));
    }

    #[test]
    fn clock_going_back_still_gives_increasing_tids() {
        let mut clock = TidClock::new(Tid::ZERO);
        let a = clock.next_at(Tid(1000));
        let b = clock.next_at(Tid(10));
        let c = clock.next_at(Tid(10));
        assert!(a < b && b < c);
        assert_eq!(b, Tid(1001));
    }
}
