//! RFC 3339 timestamps, as eslogger writes event times and property lists dates, in
//! seconds since the epoch.

/// `text[range]` as a number, when it is all ASCII digits.
fn digits(text: &str, from: usize, len: usize) -> Option<i64> {
    let part = text.get(from..from + len)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of `2026-10-05T09:00:21.123456789Z` or `…+02:00`; `None` when
/// `text` is not such a timestamp.
pub fn seconds(text: &str) -> Option<i64> {
    let (year, month, day) = (
        digits(text, 0, 4)?,
        digits(text, 5, 2)?,
        digits(text, 8, 2)?,
    );
    let (hour, minute, second) = (
        digits(text, 11, 2)?,
        digits(text, 14, 2)?,
        digits(text, 17, 2)?,
    );
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    let bytes = text.as_bytes();
    let t = bytes.get(10).copied()?;
    if seps.iter().any(|(i, c)| bytes.get(*i) != Some(c)) || !matches!(t, b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        rest = fraction.get(end..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.get(3..4)? != ":" {
                return None;
            }
            sign * (digits(rest, 1, 2)? * 3600 + digits(rest, 4, 2)? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(60) - offset)
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn parses_eslogger_and_plist_times() {
        assert_eq!(seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            seconds("2026-10-05T09:00:21.123456789Z"),
            Some(1_791_190_821)
        );
        assert_eq!(seconds("2026-10-05T11:00:21+02:00"), Some(1_791_190_821));
        assert_eq!(seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2026-10-05",
            "2026-13-05T00:00:00Z",
            "2026-10-05T00:00:00",
            "x",
        ] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }
}
