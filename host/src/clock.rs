//! Wall time as the agent records it: milliseconds since the epoch, and RFC 3339 text in
//! UTC (the form eslogger writes), both ways. Event times come from the stream; the parser
//! takes them as text an attacker may have shaped and answers `None` for anything that
//! is not a plain RFC 3339 timestamp.

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, as RFC 3339 in UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_parts(
        i64::try_from(now.as_secs()).unwrap_or(0),
        now.subsec_nanos(),
        9,
    )
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds.
pub fn rfc3339_of_ms(ms: i64) -> String {
    let nanos = u32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    format_parts(ms.div_euclid(1000), nanos, 3)
}

fn format_parts(secs: i64, nanos: u32, digits: usize) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let fraction = format!("{nanos:09}");
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        fraction.get(..digits).unwrap_or(&fraction)
    )
}

/// Days since 1970-01-01 of a civil date (the inverse of [`format_parts`]'s).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch of an RFC 3339 timestamp (`2026-10-05T09:00:19.123Z`,
/// any fraction, `Z` or `±hh:mm`); `None` for anything else.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start || at - start > 18 {
            return None;
        }
        let digits = b.get(start..at)?;
        for (i, d) in digits.iter().take(3).enumerate() {
            millis += i64::from(d - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
        }
    }
    let offset = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num(at + 1..at + 3)?;
            let m = num(at + 4..at + 6)?;
            let _ = (h1, h2, m1, m2);
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_refuses_what_is_not_one() {
        let t = parse_rfc3339_ms("2026-10-05T09:00:19.123456789Z").unwrap();
        assert_eq!(rfc3339_of_ms(t), "2026-10-05T09:00:19.123Z");
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-10-05T11:00:19+02:00"),
            parse_rfc3339_ms("2026-10-05T09:00:19Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2026-10-05",
            "2026-13-05T09:00:19Z",
            "2026-10-05T09:00:19",
            "2026-10-05T09:00:19.Z",
            "2026-10-05T09:00:19Zjunk",
            "20x6-10-05T09:00:19Z",
            "2026-10-05T09:00:19.1234567890123456789Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        assert!(now_rfc3339().ends_with('Z'));
        assert!(parse_rfc3339_ms(&now_rfc3339()).unwrap() > 1_700_000_000_000);
    }
}
