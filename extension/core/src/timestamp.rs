//! ISO-8601 timestamps as found in `fetched_at`, `retried_at`, `finalized_at`.

/// Microseconds since 1970-01-01T00:00:00Z for an ISO-8601 date or date-time
/// (`T` or space separator, optional fraction, `Z` or `±HH[:MM]` offset; no offset = UTC).
/// `None` when the text is not such a timestamp.
pub fn parse_iso8601_micros(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * 86_400_000_000;
    if b.len() == 10 {
        return Some(micros);
    }
    if !matches!(b.get(10), Some(b'T') | Some(b't') | Some(b' ')) {
        return None;
    }
    let hour = num(11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = num(14, 2)?;
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = num(17, 2)?;
        i = 19;
    }
    if hour > 24 || minute > 59 || second > 60 {
        return None;
    }
    let mut frac_micros = 0i64;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &b[start..i.min(start + 6)];
        let mut v = 0i64;
        for d in digits {
            v = v * 10 + (d - b'0') as i64;
        }
        for _ in digits.len()..6 {
            v *= 10;
        }
        frac_micros = v;
    }
    let mut offset_secs = 0i64;
    match b.get(i) {
        None => {}
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => {}
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let mut j = i + 3;
            let mut om = 0;
            if b.get(j) == Some(&b':') {
                j += 1;
            }
            if j < b.len() {
                om = num(j, 2)?;
                j += 2;
            }
            if j != b.len() || oh > 23 || om > 59 {
                return None;
            }
            offset_secs = (oh * 3600 + om * 60) * if sign == b'+' { 1 } else { -1 };
        }
        _ => return None,
    }
    micros += ((hour * 60 + minute) * 60 + second - offset_secs) * 1_000_000 + frac_micros;
    Some(micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_iso8601_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601_micros("1970-01-02"), Some(86_400_000_000));
        assert_eq!(
            parse_iso8601_micros("2025-10-24T14:29:03Z"),
            Some(1_761_316_143_000_000)
        );
        assert_eq!(
            parse_iso8601_micros("2025-10-24T16:29:03.5+02:00"),
            Some(1_761_316_143_500_000)
        );
        assert_eq!(
            parse_iso8601_micros("2025-10-24 14:29:03.123456789"),
            Some(1_761_316_143_123_456)
        );
        assert_eq!(
            parse_iso8601_micros("2025-10-24T14:29Z"),
            Some(1_761_316_140_000_000)
        );
        assert_eq!(
            parse_iso8601_micros("2024-02-29"),
            Some(19_782 * 86_400_000_000)
        );
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-02-30",
            "2025-10-24T",
            "2025-10-24T14:29:03Q",
            "2025-10-24T14:29:03+2",
        ] {
            assert_eq!(parse_iso8601_micros(bad), None, "{bad}");
        }
    }
}
