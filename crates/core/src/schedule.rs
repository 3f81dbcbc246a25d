//! Schedule expressions as EventBridge Scheduler takes them ("Schedule types in EventBridge
//! Scheduler", EventBridge Scheduler User Guide): `rate(value unit)` with minutes, hours or
//! days, and `cron(minutes hours day-of-month month day-of-week year)`, each evaluated in a
//! time zone from the time zone database. What the guide documents of daylight saving time is
//! kept: a cron time that does not exist on the day the clocks go forward is skipped, one that
//! happens twice when they go back runs once (the first), and a rate of days is a run of
//! 24-hour periods, whatever the wall clock does.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// A recurring schedule in its time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub expression: String,
    pub timezone: Tz,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Rate(Duration),
    Cron(Cron),
}

#[derive(Clone, Debug, PartialEq)]
struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    /// `None`: `?`, the day of the week decides.
    days_of_month: Option<BTreeSet<u32>>,
    months: BTreeSet<u32>,
    /// 1 (Sunday) to 7 (Saturday); `None`: `?`.
    days_of_week: Option<BTreeSet<u32>>,
    years: BTreeSet<u32>,
}

/// How far ahead a cron expression is searched for its next time: past this, it never runs
/// again (a year list in the past, or February 30).
const SEARCH_DAYS: i64 = 366 * 8;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's values: `*`, `a`, `a-b`, `a/step`, `*/step`, `a-b/step`, lists of them, names
/// where the field has them.
fn field(
    text: &str,
    what: &str,
    range: (u32, u32),
    names: &[&str],
) -> Result<BTreeSet<u32>, String> {
    let value = |word: &str| -> Result<u32, String> {
        let upper = word.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + range.0);
        }
        let n: u32 = word
            .parse()
            .map_err(|_| format!("'{word}' is not a {what}"))?;
        if n < range.0 || n > range.1 {
            return Err(format!("{what} {n} is not within {}-{}", range.0, range.1));
        }
        Ok(n)
    };
    let mut values = BTreeSet::new();
    for part in text.split(',') {
        if part.contains(['L', 'W', '#'])
            && names.iter().all(|n| !part.to_ascii_uppercase().contains(n))
        {
            return Err(format!(
                "'{part}': the L, W and # wildcards are not supported here; list the days instead"
            ));
        }
        let (span, step) = match part.split_once('/') {
            Some((span, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("'{part}': the step must be a positive number"))?;
                (span, step)
            }
            None => (part, 1),
        };
        let (from, to) = match span {
            "*" => range,
            _ => match span.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/step` runs from a to the end of the range.
                None if step > 1 || part.contains('/') => (value(span)?, range.1),
                None => {
                    let v = value(span)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("'{part}': the range runs backwards"));
        }
        values.extend((from..=to).step_by(step as usize));
    }
    Ok(values)
}

impl Schedule {
    /// Reads `expression` in `timezone` (a name from the time zone database, `UTC` if empty).
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, String> {
        let timezone: Tz = if timezone.is_empty() {
            Tz::UTC
        } else {
            timezone
                .parse()
                .map_err(|_| format!("'{timezone}' is not a time zone of the time zone database"))?
        };
        let expression = expression.trim();
        let kind = if let Some(inner) = expression
            .strip_prefix("rate(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let (value, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or("rate(value unit): a number and minutes, hours or days")?;
            let value: i64 = value
                .parse()
                .ok()
                .filter(|v| (1..=1_000_000).contains(v))
                .ok_or("a rate's value is a positive number, at most 1000000")?;
            let unit = match (value, unit.trim()) {
                (1, "minute") | (_, "minutes") => Duration::minutes(1),
                (1, "hour") | (_, "hours") => Duration::hours(1),
                (1, "day") | (_, "days") => Duration::days(1),
                (_, other) => {
                    return Err(format!(
                        "'{other}': a rate's unit is minute(s), hour(s) or day(s), singular for 1"
                    ))
                }
            };
            Kind::Rate(unit * value as i32)
        } else if let Some(inner) = expression
            .strip_prefix("cron(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            let [minutes, hours, dom, month, dow, year] = fields[..] else {
                return Err(
                    "cron(minutes hours day-of-month month day-of-week year): six fields".into(),
                );
            };
            let optional =
                |text: &str, what, range, names| -> Result<Option<BTreeSet<u32>>, String> {
                    if text == "?" {
                        Ok(None)
                    } else {
                        field(text, what, range, names).map(Some)
                    }
                };
            let days_of_month = optional(dom, "day of the month", (1, 31), &[])?;
            let days_of_week = optional(dow, "day of the week", (1, 7), &DAYS)?;
            if days_of_month.is_some() == days_of_week.is_some() {
                return Err(
                    "one of the day-of-month and day-of-week fields must be ?, not both or neither"
                        .into(),
                );
            }
            Kind::Cron(Cron {
                minutes: field(minutes, "minute", (0, 59), &[])?,
                hours: field(hours, "hour", (0, 23), &[])?,
                days_of_month,
                months: field(month, "month", (1, 12), &MONTHS)?,
                days_of_week,
                years: field(year, "year", (1970, 2199), &[])?,
            })
        } else {
            return Err("a schedule is rate(value unit) or cron(six fields)".into());
        };
        Ok(Schedule {
            expression: expression.to_owned(),
            timezone,
            kind,
        })
    }

    /// The first time the schedule runs after `after`; `start` is when a rate's periods begin.
    /// `None`: it never runs again.
    pub fn next_after(&self, after: DateTime<Utc>, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Rate(every) => {
                if after < start {
                    return Some(start);
                }
                let periods = (after - start).num_seconds() / every.num_seconds() + 1;
                Some(start + *every * periods as i32)
            }
            Kind::Cron(cron) => cron.next_after(after, self.timezone),
        }
    }
}

impl Cron {
    fn day_matches(&self, day: NaiveDate) -> bool {
        self.years.contains(&(day.year() as u32))
            && self.months.contains(&day.month())
            && match (&self.days_of_month, &self.days_of_week) {
                (Some(dom), _) => dom.contains(&day.day()),
                (None, Some(dow)) => dow.contains(&(day.weekday().number_from_sunday())),
                (None, None) => true,
            }
    }

    fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let first_day = after.with_timezone(&tz).date_naive();
        for offset in 0..SEARCH_DAYS {
            let day = first_day + Duration::days(offset);
            if !self.day_matches(day) {
                continue;
            }
            for hour in &self.hours {
                for minute in &self.minutes {
                    let local = day.and_hms_opt(*hour, *minute, 0)?;
                    // A time the clocks skip does not run; one they pass twice runs the first
                    // time ("Daylight saving time on EventBridge Scheduler").
                    let Some(at) = tz.from_local_datetime(&local).earliest() else {
                        continue;
                    };
                    let at = at.with_timezone(&Utc);
                    if at > after {
                        return Some(at);
                    }
                }
            }
        }
        None
    }
}

/// A date written relative to a run, as a subscription's parameters may be: `today`,
/// `yesterday` or `tomorrow`, optionally `+` or `-` a count of days, weeks, months or years
/// (`today-7d`, `yesterday-1m`), in the schedule's time zone at `now`. `Ok(None)`: the text is
/// not relative, and is the value itself. Months keep the day, or end at the month's last.
pub fn relative_date(
    text: &str,
    timezone: Tz,
    now: DateTime<Utc>,
) -> Result<Option<NaiveDate>, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (base, rest) = if let Some(rest) = lower.strip_prefix("today") {
        (0, rest)
    } else if let Some(rest) = lower.strip_prefix("yesterday") {
        (-1, rest)
    } else if let Some(rest) = lower.strip_prefix("tomorrow") {
        (1, rest)
    } else {
        return Ok(None);
    };
    let today = now.with_timezone(&timezone).date_naive();
    let day = today + Duration::days(base);
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(Some(day));
    }
    let refuse = || {
        format!("'{text}': a relative date is today, yesterday or tomorrow, then +N or -N with d, w, m or y (today-7d)")
    };
    let (sign, amount) = match rest.as_bytes()[0] {
        b'+' => (1i64, rest[1..].trim()),
        b'-' => (-1i64, rest[1..].trim()),
        _ => return Err(refuse()),
    };
    let unit_at = amount
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(refuse)?;
    let n: i64 = amount[..unit_at].parse().map_err(|_| refuse())?;
    if n > 100_000 {
        return Err(refuse());
    }
    let months = |m: i64| {
        let m = chrono::Months::new(m.unsigned_abs() as u32);
        if sign > 0 {
            day.checked_add_months(m)
        } else {
            day.checked_sub_months(m)
        }
    };
    let moved = match amount[unit_at..].trim() {
        "d" | "day" | "days" => day.checked_add_signed(Duration::days(sign * n)),
        "w" | "week" | "weeks" => day.checked_add_signed(Duration::weeks(sign * n)),
        "m" | "month" | "months" => months(n),
        "y" | "year" | "years" => months(n * 12),
        _ => return Err(refuse()),
    };
    moved
        .map(Some)
        .ok_or_else(|| format!("'{text}' is out of the calendar's range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_daily_cron_keeps_its_wall_clock_time_across_daylight_saving() {
        let s = Schedule::parse("cron(0 6 * * ? *)", "America/New_York").unwrap();
        // 2026-03-08 the clocks go forward in New York: 06:00 is 11:00 UTC before, 10:00 after.
        let before = s.next_after(utc("2026-03-07T00:00:00Z"), utc("2026-01-01T00:00:00Z"));
        assert_eq!(before, Some(utc("2026-03-07T11:00:00Z")));
        let after = s.next_after(utc("2026-03-07T11:00:00Z"), utc("2026-01-01T00:00:00Z"));
        assert_eq!(after, Some(utc("2026-03-08T10:00:00Z")));
    }

    #[test]
    fn a_skipped_time_does_not_run_and_a_repeated_one_runs_once() {
        let s = Schedule::parse("cron(30 2 * * ? *)", "America/New_York").unwrap();
        // 02:30 does not exist on 2026-03-08: the next run is the 9th.
        let next = s.next_after(utc("2026-03-08T05:00:00Z"), utc("2026-01-01T00:00:00Z"));
        assert_eq!(next, Some(utc("2026-03-09T06:30:00Z")));
        let s = Schedule::parse("cron(30 1 * * ? *)", "America/New_York").unwrap();
        // 01:30 happens twice on 2026-11-01 (EDT, then EST): it runs at the first only.
        let first = s.next_after(utc("2026-11-01T04:00:00Z"), utc("2026-01-01T00:00:00Z"));
        assert_eq!(first, Some(utc("2026-11-01T05:30:00Z")));
        let then = s.next_after(first.unwrap(), utc("2026-01-01T00:00:00Z"));
        assert_eq!(then, Some(utc("2026-11-02T06:30:00Z")));
    }

    #[test]
    fn a_rate_of_days_is_24_hour_periods() {
        let s = Schedule::parse("rate(1 day)", "America/New_York").unwrap();
        let start = utc("2026-03-07T11:00:00Z");
        assert_eq!(
            s.next_after(utc("2026-03-07T11:00:00Z"), start),
            Some(utc("2026-03-08T11:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-01T00:00:00Z"), start),
            Some(start)
        );
        let s = Schedule::parse("rate(15 minutes)", "").unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-01T00:20:00Z"), utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:30:00Z"))
        );
    }

    #[test]
    fn days_of_the_week_months_by_name_lists_ranges_and_steps() {
        let s = Schedule::parse("cron(0/20 8-9 ? JAN,MAR MON-FRI 2026)", "UTC").unwrap();
        // 2026-01-03 is a Saturday: the next run is Monday the 5th at 08:00.
        assert_eq!(
            s.next_after(utc("2026-01-03T00:00:00Z"), utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-05T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-01-05T09:40:00Z"), utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-06T08:00:00Z"))
        );
        // After the last run in the year listed, never again.
        assert_eq!(
            s.next_after(utc("2026-03-31T09:40:00Z"), utc("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn relative_dates_resolve_in_the_schedule_s_time_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let now = utc("2026-03-31T20:00:00Z"); // already April 1st in Tokyo
        let day = |text: &str, tz: Tz| relative_date(text, tz, now).unwrap().map(|d| d.to_string());
        assert_eq!(day("today", Tz::UTC).as_deref(), Some("2026-03-31"));
        assert_eq!(day("today", tokyo).as_deref(), Some("2026-04-01"));
        assert_eq!(day("Yesterday", tokyo).as_deref(), Some("2026-03-31"));
        assert_eq!(day("today-7d", Tz::UTC).as_deref(), Some("2026-03-24"));
        assert_eq!(
            day("today - 1m", Tz::UTC).as_deref(),
            Some("2026-02-28"),
            "the month's last day"
        );
        assert_eq!(day("tomorrow+1w", Tz::UTC).as_deref(), Some("2026-04-08"));
        assert_eq!(
            day("2026-01-01", Tz::UTC),
            None,
            "not relative: the value itself"
        );
        for bad in ["today-7", "today*2d", "today-7x", "yesterday+99999999d"] {
            assert!(relative_date(bad, Tz::UTC, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_is_not_a_schedule_is_refused_saying_why() {
        for (expression, timezone, says) in [
            ("cron(0 6 * * * *)", "UTC", "must be ?"),
            ("cron(0 6 ? * ? *)", "UTC", "must be ?"),
            ("cron(0 6 * *)", "UTC", "six fields"),
            ("cron(0 25 * * ? *)", "UTC", "hour 25"),
            ("cron(0 6 L * ? *)", "UTC", "not supported"),
            ("rate(0 days)", "UTC", "positive"),
            ("rate(2 day)", "UTC", "singular for 1"),
            ("every day", "UTC", "rate(value unit) or cron"),
            ("rate(1 day)", "Mars/Olympus", "time zone"),
        ] {
            let e = Schedule::parse(expression, timezone).unwrap_err();
            assert!(e.contains(says), "{expression}: {e}");
        }
    }
}
