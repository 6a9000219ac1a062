//! Backup job schedules: a small subset of systemd calendar events, as Proxmox uses them
//! (docs/backups.md, "Schedule syntax"), in the node's local time.
//!
//! ```text
//! minutely | hourly | daily | weekly | monthly        shorthands (*:*, *:00, 00:00,
//!                                                     mon 00:00, the 1st at 00:00)
//! [WEEKDAYS] [HOURS:]MINUTES                          e.g. sat 02:30, mon..fri 21:00,
//!                                                     *:0/15, 02:00, */5
//! WEEKDAYS   mon,tue,…  or ranges mon..fri, comma-separated; alone: at 00:00
//! HOURS      0-23, MINUTES 0-59, each: *  N  N..M  N/STEP  */STEP, comma-separated;
//!            MINUTES alone: every hour
//! ```

/// A parsed schedule: the local times it fires at (minute resolution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Bit 0 = Monday … bit 6 = Sunday.
    weekdays: u8,
    hours: u32,
    minutes: u64,
    /// Only on this day of the month (`monthly`).
    monthday: Option<i64>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str, whole: &str) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| l == *d || (l.len() > 3 && full_day(d).starts_with(&l)))
        .map(|p| p as u32)
        .ok_or_else(|| {
            format!(
                "schedule {whole:?}: {s:?} is not a weekday: use mon, tue, wed, thu, fri, sat, sun (ranges like mon..fri)"
            )
        })
}

fn full_day(d: &str) -> &'static str {
    match d {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn weekdays(s: &str, whole: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (day(a, whole)?, day(b, whole)?);
                if a > b {
                    return Err(format!(
                        "schedule {whole:?}: the weekday range {part:?} runs backwards (write it Monday first, e.g. mon..fri)"
                    ));
                }
                for d in a..=b {
                    bits |= 1 << d;
                }
            }
            None => bits |= 1 << day(part, whole)?,
        }
    }
    Ok(bits)
}

/// A set of values 0..=max: `*`, `N`, `N..M`, `N/STEP`, `*/STEP`, comma-separated.
fn values(s: &str, max: u32, what: &str, whole: &str) -> Result<u64, String> {
    let bad = |why: String| format!("schedule {whole:?}: {what} {s:?}: {why}");
    let num = |x: &str| -> Result<u32, String> {
        let n: u32 = x
            .parse()
            .map_err(|_| bad(format!("{x:?} is not a number")))?;
        if n > max {
            return Err(bad(format!("{n} is out of range 0-{max}")));
        }
        Ok(n)
    };
    if s.is_empty() {
        return Err(bad("empty".into()));
    }
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st = num(st)?;
                if st == 0 {
                    return Err(bad("a step of 0".into()));
                }
                (r, Some(st))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" {
            (0, max)
        } else if let Some((a, b)) = range.split_once("..") {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad(format!("the range {range:?} runs backwards")));
            }
            (a, b)
        } else {
            let a = num(range)?;
            // N/STEP: from N to the end; N alone: just N
            (a, if step.is_some() { max } else { a })
        };
        let st = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += st;
        }
    }
    Ok(bits)
}

pub fn parse(text: &str) -> Result<Schedule, String> {
    let whole = text.trim();
    let all_days = 0x7f;
    let every_hour = (1u32 << 24) - 1;
    let sched = |weekdays, hours, minutes| Schedule {
        weekdays,
        hours,
        minutes,
        monthday: None,
    };
    match whole.to_ascii_lowercase().as_str() {
        "" => {
            return Err(
                "the schedule is empty: give e.g. daily, sat 02:30, mon..fri 21:00 or *:0/15"
                    .into(),
            )
        }
        "minutely" => return Ok(sched(all_days, every_hour, (1u64 << 60) - 1)),
        "hourly" => return Ok(sched(all_days, every_hour, 1)),
        "daily" => return Ok(sched(all_days, 1, 1)),
        "weekly" => return Ok(sched(1, 1, 1)),
        "monthly" => {
            return Ok(Schedule {
                monthday: Some(1),
                ..sched(all_days, 1, 1)
            })
        }
        _ => {}
    }
    let parts: Vec<&str> = whole.split_whitespace().collect();
    let is_days = |p: &str| p.starts_with(|c: char| c.is_ascii_alphabetic());
    let (days, time) = match parts.as_slice() {
        [d] if is_days(d) => (Some(*d), None),
        [t] => (None, Some(*t)),
        [d, t] if is_days(d) => (Some(*d), Some(*t)),
        _ => {
            return Err(format!(
                "schedule {whole:?} is not understood: give [WEEKDAYS] [HOURS:]MINUTES (e.g. sat 02:30, mon..fri 21:00, *:0/15) or daily, hourly, weekly, monthly, minutely"
            ))
        }
    };
    let weekdays = match days {
        Some(d) => weekdays(d, whole)?,
        None => all_days,
    };
    let (hours, minutes) = match time {
        None => (1, 1),
        Some(t) => match t.split_once(':') {
            Some((h, m)) => (
                values(h, 23, "hours", whole)? as u32,
                values(m, 59, "minutes", whole)?,
            ),
            None => (every_hour, values(t, 59, "minutes", whole)?),
        },
    };
    Ok(sched(weekdays, hours, minutes))
}

impl Schedule {
    /// The first time strictly after `t` (Unix seconds, on a minute) this schedule fires;
    /// `offset(t)` is local time's offset from UTC at `t`. None if not within 400 days.
    pub fn next_after(&self, t: i64, offset: &dyn Fn(i64) -> i64) -> Option<i64> {
        let mut u = (t.div_euclid(60) + 1) * 60;
        let limit = u + 400 * 86_400;
        while u <= limit {
            let l = u + offset(u);
            let days = l.div_euclid(86_400);
            let wd = (days + 3).rem_euclid(7);
            let (_, _, d, h, mi, _) = keel_api::time::utc_parts(l);
            let day_ok = self.weekdays & (1 << wd) != 0 && self.monthday.is_none_or(|m| m == d);
            if !day_ok {
                u += 86_400 - l.rem_euclid(86_400);
                continue;
            }
            if self.hours & (1 << h) == 0 {
                u += 3600 - l.rem_euclid(3600);
                continue;
            }
            if self.minutes & (1 << mi) == 0 {
                u += 60;
                continue;
            }
            return Some(u);
        }
        None
    }
}

/// The next run after a run of the slot `prev` started at `now`: from now (so a run missed
/// while hostd was down is run once, not once per missed slot), skipping the second
/// occurrence of the same wall-clock time (the hour repeated when daylight saving ends).
pub fn next_after_run(
    s: &Schedule,
    prev: Option<i64>,
    now: i64,
    offset: &dyn Fn(i64) -> i64,
) -> Option<i64> {
    let n = s.next_after(now, offset)?;
    match prev {
        Some(p) if n + offset(n) == p + offset(p) => s.next_after(n, offset),
        _ => Some(n),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-02 12:00:00 UTC, a Wednesday.
    const T0: i64 = 1_796_212_800;

    fn utc(_: i64) -> i64 {
        0
    }

    fn next(s: &str, t: i64) -> String {
        let n = parse(s).unwrap().next_after(t, &utc).unwrap();
        keel_api::time::utc(n, ' ')
    }

    #[test]
    fn next_runs_table() {
        for (s, want) in [
            ("minutely", "2026-12-02 12:01:00"),
            ("hourly", "2026-12-02 13:00:00"),
            ("daily", "2026-12-03 00:00:00"),
            ("weekly", "2026-12-07 00:00:00"),
            ("monthly", "2027-01-01 00:00:00"),
            ("sat 02:30", "2026-12-05 02:30:00"),
            ("Saturday 02:30", "2026-12-05 02:30:00"),
            ("mon..fri 21:00", "2026-12-02 21:00:00"),
            ("mon,tue 21:00", "2026-12-07 21:00:00"),
            ("*:0/15", "2026-12-02 12:15:00"),
            ("*/5", "2026-12-02 12:05:00"),
            ("12:00", "2026-12-03 12:00:00"),
            ("12:01", "2026-12-02 12:01:00"),
            ("02:00", "2026-12-03 02:00:00"),
            ("8..17/3:30", "2026-12-02 14:30:00"),
            ("0,13:45", "2026-12-02 13:45:00"),
            ("sun", "2026-12-06 00:00:00"),
            ("wed 12:00", "2026-12-09 12:00:00"),
        ] {
            assert_eq!(next(s, T0), want, "{s}");
        }
        // mid-minute: the next whole minute
        assert_eq!(next("minutely", T0 + 30), "2026-12-02 12:01:00");
    }

    #[test]
    fn local_time_and_dst() {
        // at UTC+1, "02:00" is 01:00 UTC
        let s = parse("02:00").unwrap();
        let n = s.next_after(T0, &|_| 3600).unwrap();
        assert_eq!(keel_api::time::utc(n, ' '), "2026-12-03 01:00:00");
        // a DST-like jump: offset +1h before T0+13h, +2h after; "03:30" local on the next
        // day is 01:30 UTC (offset +2h)
        let dst = |t: i64| if t < T0 + 13 * 3600 { 3600 } else { 7200 };
        let n = parse("03:30").unwrap().next_after(T0, &dst).unwrap();
        assert_eq!(keel_api::time::utc(n, ' '), "2026-12-03 01:30:00");
    }

    /// When daylight saving ends, 02:30 local happens twice: the job runs at the first one
    /// only; a missed slot days ago gives the next slot from now.
    #[test]
    fn repeated_wall_clock_time_runs_once() {
        // offset +2h until 00:45 UTC on 12-03, +1h after: local 02:30 on 12-03 is 00:30 UTC
        // (+2h) and again 01:30 UTC (+1h)
        let change = T0 + 12 * 3600 + 2700;
        let off = move |t: i64| if t < change { 7200 } else { 3600 };
        let s = parse("02:30").unwrap();
        let first = s.next_after(T0, &off).unwrap();
        assert_eq!(keel_api::time::utc(first, ' '), "2026-12-03 00:30:00");
        // the naive next run from just after the first is the repeated 02:30
        let naive = s.next_after(first + 5, &off).unwrap();
        assert_eq!(keel_api::time::utc(naive, ' '), "2026-12-03 01:30:00");
        let next = next_after_run(&s, Some(first), first + 5, &off).unwrap();
        assert_eq!(keel_api::time::utc(next, ' '), "2026-12-04 01:30:00");
        // a slot missed three days ago: the next one is tomorrow's, once
        let missed = first - 3 * 86_400;
        let n = next_after_run(&s, Some(missed), T0 + 14 * 3600, &off).unwrap();
        assert_eq!(keel_api::time::utc(n, ' '), "2026-12-04 01:30:00");
    }

    /// When daylight saving starts, local 02:00-03:00 does not exist: 02:30 is skipped that
    /// day and runs the next.
    #[test]
    fn missing_wall_clock_time_is_skipped() {
        // offset +1h until 01:00 UTC on 12-03 (local 02:00), +2h after (local 03:00)
        let change = T0 + 13 * 3600;
        let off = move |t: i64| if t < change { 3600 } else { 7200 };
        let n = parse("02:30").unwrap().next_after(T0, &off).unwrap();
        assert_eq!(keel_api::time::utc(n, ' '), "2026-12-04 00:30:00");
    }

    #[test]
    fn clear_errors() {
        for (s, part) in [
            ("", "empty"),
            ("mon..fry 21:00", "\"fry\" is not a weekday"),
            ("fri..mon 21:00", "runs backwards"),
            ("25:00", "25 is out of range 0-23"),
            ("12:60", "60 is out of range 0-59"),
            ("*:0/0", "a step of 0"),
            ("daily 02:00 x", "not understood"),
            ("12:xx", "\"xx\" is not a number"),
            ("every 6h", "not a weekday"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(part), "{s:?}: {e}");
        }
    }
}
