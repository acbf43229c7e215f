//! sd.json's timestamps: local wall-clock time with microseconds and no zone.

use super::*;

/// Parses sd.json's local time (`2025-08-07T22:53:52.581782`); RFC 3339 with a zone is
/// accepted too.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    LocalClock::default().parse(s)
}

/// Turns local wall-clock times into UTC, remembering the zone offset of the last minute it
/// looked up: zone offsets change only at whole minutes, and a capture's records come
/// minutes apart at most, so a million records cost a handful of time-zone look-ups.
#[derive(Default)]
pub(super) struct LocalClock {
    minute: Option<(i64, i64)>,
}

impl LocalClock {
    pub(super) fn parse(&mut self, s: &str) -> Option<Timestamp> {
        let Some(naive) = parse_naive(s) else {
            let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
            return t.to_utc().timestamp_nanos_opt().map(Timestamp);
        };
        let naive_secs = naive.and_utc().timestamp();
        let minute = naive_secs.div_euclid(60);
        let offset = match self.minute {
            Some((m, offset)) if m == minute => offset,
            _ => {
                let offset = local_offset_secs(&naive);
                self.minute = Some((minute, offset));
                offset
            }
        };
        let nanos = naive.and_utc().timestamp_nanos_opt()?;
        nanos
            .checked_sub(offset.checked_mul(1_000_000_000)?)
            .map(Timestamp)
    }
}

/// Seconds east of UTC of the local zone at a wall-clock time. In a repeated hour the
/// earlier offset wins; a time skipped by a DST change is taken as UTC rather than dropped.
fn local_offset_secs(naive: &NaiveDateTime) -> i64 {
    use chrono::Offset;
    match Local.offset_from_local_datetime(naive) {
        chrono::LocalResult::Single(o) | chrono::LocalResult::Ambiguous(o, _) => {
            i64::from(o.fix().local_minus_utc())
        }
        chrono::LocalResult::None => 0,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` without chrono's general format parser, which is the
/// slowest step of importing a large file.
fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let mut nanos = 0u32;
    match b.get(19) {
        None => {}
        Some(b'.') => {
            let digits = &b[20..];
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            nanos = num(20..b.len())? * 10u32.pow(9 - digits.len() as u32);
        }
        Some(_) => return None,
    }
    let time =
        chrono::NaiveTime::from_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    Some(NaiveDateTime::new(date, time))
}

pub fn format_timestamp(t: Timestamp) -> String {
    t.to_datetime()
        .with_timezone(&Local)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}
