//! Unix seconds as a UTC calendar date, without a date library (the CLI's tables and libvirt's
//! `passwdValidTo` both need it).

/// `(year, month, day, hour, minute, second)` in UTC of Unix time `secs`.
pub fn utc_parts(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's civil_from_days)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DD{sep}HH:MM:SS` in UTC.
pub fn utc(secs: i64, sep: char) -> String {
    let (y, m, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}-{m:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0, 'T'), "1970-01-01T00:00:00");
        assert_eq!(utc(951_782_400, 'T'), "2000-02-29T00:00:00");
        assert_eq!(utc(1_795_000_000, ' '), "2026-11-18 11:06:40");
        assert_eq!(utc(4_102_444_799, 'T'), "2099-12-31T23:59:59");
        assert_eq!(utc(-1, 'T'), "1969-12-31T23:59:59");
    }
}
