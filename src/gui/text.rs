//! Number and time formatting shared by the panes. Pure functions, so they are unit-tested
//! without a window.

use crate::capture::{Connection, Timestamp};

/// `1234567` → `1,234,567`: packet counts in a capture run into the millions and are read
/// at a glance in the top bar and the connection list.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Sizes in binary units with one decimal, `812 B`, `12.3 KiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Time of day in UTC with microseconds. The table shows only this; the date, which rarely
/// changes within a capture, is in the details box.
pub fn time_of_day(t: Timestamp) -> String {
    t.to_datetime().format("%H:%M:%S%.6f").to_string()
}

/// `127.0.0.1:50000 → 10.0.0.2:18680`
pub fn endpoints(conn: &Connection) -> String {
    format!("{} → {}", conn.client, conn.server)
}

/// What carried the connection: `fesl · ra3-login`, `fesl`, `ra3-login` or `–`.
pub fn protocol_and_route(conn: &Connection) -> String {
    match (conn.protocol.as_deref(), conn.route.as_deref()) {
        (Some(p), Some(r)) if p != r => format!("{p} · {r}"),
        (Some(one), Some(_)) => one.to_owned(),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn protocol_and_route_are_not_repeated() {
        let mut c = Connection::new(
            crate::capture::UNKNOWN_ADDR,
            crate::capture::UNKNOWN_ADDR,
            crate::capture::Transport::Tcp,
            Timestamp(0),
        );
        assert_eq!(protocol_and_route(&c), "–");
        c.route = Some("ra3-login".into());
        assert_eq!(protocol_and_route(&c), "ra3-login");
        c.protocol = Some("fesl".into());
        assert_eq!(protocol_and_route(&c), "fesl · ra3-login");
        c.route = Some("fesl".into());
        assert_eq!(protocol_and_route(&c), "fesl");
    }

    #[test]
    fn time_of_day_keeps_microseconds() {
        let t = Timestamp::from_secs_nanos(1_754_607_232, 581_782_123);
        assert_eq!(time_of_day(t), "22:53:52.581782");
    }
}
