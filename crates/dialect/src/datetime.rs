//! Redshift's date and time functions, each as its page in the SQL reference describes it
//! ("Date and time functions", Amazon Redshift Database Developer Guide).

use crate::parts::Part;
use crate::rowfn::{
    date, float, int, invalid, is_time_of_day, text, time, time_of_day, timestamp, Arg, RowFn, TIME,
};
use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ScalarUDF;

pub fn functions() -> Vec<ScalarUDF> {
    use Arg::*;
    vec![
        RowFn::udf("dateadd", &[Text, Int, Time], 3, dateadd_type, dateadd),
        RowFn::udf(
            "datediff",
            &[Text, Time, Time],
            3,
            |_| DataType::Int64,
            datediff,
        ),
        RowFn::udf(
            "date_part",
            &[Text, Time],
            2,
            |_| DataType::Float64,
            date_part,
        ),
        RowFn::udf(
            "date_part_year",
            &[Time],
            1,
            |_| DataType::Int64,
            |a| Ok(ScalarValue::Int64(time(&a[0]).map(|t| i64::from(t.year())))),
        ),
        RowFn::udf("trunc", &[Any, Int], 1, trunc_type, trunc),
        RowFn::udf("add_months", &[Time, Int], 2, |_| TIME, add_months),
        RowFn::udf(
            "months_between",
            &[Time, Time],
            2,
            |_| DataType::Float64,
            months_between,
        ),
        RowFn::udf(
            "last_day",
            &[Time],
            1,
            |_| DataType::Date32,
            |a| Ok(time(&a[0]).map_or(ScalarValue::Date32(None), |t| date(last_of_month(t.date())))),
        ),
        RowFn::udf("next_day", &[Time, Text], 2, |_| DataType::Date32, next_day),
        RowFn::udf(
            "convert_timezone",
            &[Any, Any, Any],
            2,
            |_| TIME,
            convert_timezone,
        ),
        RowFn::udf(
            "redshift_date_trunc",
            &[Text, Time],
            2,
            |_| TIME,
            date_trunc_years,
        ),
        RowFn::udf("date_cmp", &[Time, Time], 2, |_| DataType::Int64, compare),
        RowFn::udf(
            "interval_cmp",
            &[Text, Text],
            2,
            |_| DataType::Int64,
            interval_cmp,
        ),
        RowFn::udf(
            "timestamp_cmp",
            &[Time, Time],
            2,
            |_| DataType::Int64,
            compare,
        ),
        RowFn::udf(
            "date_cmp_timestamp",
            &[Time, Time],
            2,
            |_| DataType::Int64,
            compare,
        ),
        RowFn::udf(
            "timestamp_cmp_date",
            &[Time, Time],
            2,
            |_| DataType::Int64,
            compare,
        ),
    ]
}

fn part_of(function: &str, v: &ScalarValue) -> Result<Option<Part>> {
    match text(v) {
        None => Ok(None),
        Some(name) => match Part::parse(name) {
            Some(part) => Ok(Some(part)),
            None => invalid(function, format!("'{name}' is not a date part")),
        },
    }
}

/// Any value as a timestamp (text read in Redshift's forms, a date at midnight).
fn as_time(v: &ScalarValue) -> Result<Option<NaiveDateTime>> {
    if let Some(s) = text(v) {
        return match crate::convert::parse_timestamp(s) {
            Some(t) => Ok(Some(t)),
            None => invalid("timestamp", format!("invalid input syntax: \"{s}\"")),
        };
    }
    Ok(time(&v.cast_to(&TIME)?))
}

fn add_months_clamped(t: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        t.checked_add_months(magnitude)
    } else {
        t.checked_sub_months(magnitude)
    }
}

/// A TIME plus hours is a TIME (it wraps past midnight); anything else, a timestamp.
fn dateadd_type(types: &[DataType]) -> DataType {
    match types.get(2) {
        Some(DataType::Time64(unit)) => DataType::Time64(*unit),
        _ => TIME,
    }
}

/// DATEADD: `n` of the part added; months (and years, quarters…) end at the month's last day
/// when the day is past it ("DATEADD function").
fn dateadd(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(part), Some(n), Some(t)) = (part_of("dateadd", &a[0])?, int(&a[1]), time(&a[2]))
    else {
        return Ok(ScalarValue::Null);
    };
    let months = |m: i64| add_months_clamped(t, m);
    // By years, February 29 goes to March 1 of a year without one ("DATEADD function": a year
    // after 2016-02-29 is 2017-03-01); by months, to the month's last day.
    let years = |y: Option<i64>| {
        let leap_day = t.month() == 2 && t.day() == 29;
        match months(y?.checked_mul(12)?) {
            Some(moved) if leap_day && moved.day() == 28 => {
                moved.checked_add_signed(Duration::days(1))
            }
            other => other,
        }
    };
    // Every step checked: a count past the calendar's range is an error, never a panic.
    let plus = |d: Option<Duration>| d.and_then(|d| t.checked_add_signed(d));
    let added = match part {
        Part::Millennium => years(n.checked_mul(1000)),
        Part::Century => years(n.checked_mul(100)),
        Part::Decade => years(n.checked_mul(10)),
        Part::Year => years(Some(n)),
        Part::Quarter => n.checked_mul(3).and_then(months),
        Part::Month => months(n),
        Part::Week => plus(Duration::try_weeks(n)),
        Part::Day | Part::DayOfWeek | Part::DayOfYear => plus(Duration::try_days(n)),
        Part::Hour => plus(Duration::try_hours(n)),
        Part::Minute => plus(Duration::try_minutes(n)),
        Part::Second => plus(Duration::try_seconds(n)),
        Part::Millisecond => plus(Duration::try_milliseconds(n)),
        Part::Microsecond => t.checked_add_signed(Duration::microseconds(n)),
        other => return invalid("dateadd", format!("{} is not a part it adds", other.name())),
    };
    match added {
        Some(t) if is_time_of_day(&a[2]) => Ok(time_of_day(t)),
        Some(t) => Ok(timestamp(t)),
        None => invalid("dateadd", "the result is out of range"),
    }
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

/// The Monday on or before the day: weeks start on Monday, as ISO weeks do.
fn week_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// DATEDIFF: how many boundaries of the part lie between the two ("DATEDIFF function": one
/// year between 2008-12-31 and 2009-01-01).
fn datediff(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(part), Some(x), Some(y)) = (part_of("datediff", &a[0])?, time(&a[1]), time(&a[2]))
    else {
        return Ok(ScalarValue::Null);
    };
    let year = |t: NaiveDateTime| i64::from(t.year());
    let month_no = |t: NaiveDateTime| year(t) * 12 + i64::from(t.month0());
    let micros = |t: NaiveDateTime| t.and_utc().timestamp_micros();
    let count = |unit: i64| floor_div(micros(y), unit) - floor_div(micros(x), unit);
    let diff = match part {
        Part::Millennium => floor_div(year(y) - 1, 1000) - floor_div(year(x) - 1, 1000),
        Part::Century => floor_div(year(y) - 1, 100) - floor_div(year(x) - 1, 100),
        Part::Decade => floor_div(year(y), 10) - floor_div(year(x), 10),
        Part::Year => year(y) - year(x),
        Part::Quarter => floor_div(month_no(y), 3) - floor_div(month_no(x), 3),
        Part::Month => month_no(y) - month_no(x),
        Part::Week => (week_start(y.date()) - week_start(x.date())).num_days() / 7,
        Part::Day | Part::DayOfWeek | Part::DayOfYear => (y.date() - x.date()).num_days(),
        Part::Hour => count(3_600_000_000),
        Part::Minute => count(60_000_000),
        Part::Second => count(1_000_000),
        Part::Millisecond => count(1_000),
        Part::Microsecond => micros(y) - micros(x),
        other => {
            return invalid(
                "datediff",
                format!("{} is not a part it counts", other.name()),
            )
        }
    };
    Ok(ScalarValue::Int64(Some(diff)))
}

/// DATE_PART and EXTRACT: Sunday is day 0 of the week, weeks are ISO weeks, seconds carry
/// their fraction ("DATE_PART function", "EXTRACT function").
fn date_part(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(part), Some(t)) = (part_of("date_part", &a[0])?, time(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    let year = f64::from(t.year());
    let value = match part {
        Part::Millennium => ((year - 1.0) / 1000.0).floor() + 1.0,
        Part::Century => ((year - 1.0) / 100.0).floor() + 1.0,
        // The decade of 2000 is 201 ("EXTRACT function").
        Part::Decade => (year / 10.0).floor() + 1.0,
        Part::Epoch => t.and_utc().timestamp_micros() as f64 / 1e6,
        Part::Year => year,
        Part::Quarter => f64::from(t.month0() / 3 + 1),
        Part::Month => f64::from(t.month()),
        Part::Week => f64::from(t.iso_week().week()),
        Part::DayOfWeek => f64::from(t.weekday().num_days_from_sunday()),
        Part::DayOfYear => f64::from(t.ordinal()),
        Part::Day => f64::from(t.day()),
        Part::Hour => f64::from(t.hour()),
        Part::Minute => f64::from(t.minute()),
        Part::Second => f64::from(t.second()) + f64::from(t.nanosecond() / 1_000) / 1e6,
        Part::Millisecond => f64::from(t.nanosecond() / 1_000_000),
        Part::Microsecond => f64::from(t.nanosecond() / 1_000),
        Part::Timezone | Part::TimezoneHour | Part::TimezoneMinute => 0.0,
    };
    Ok(ScalarValue::Float64(Some(value)))
}

fn trunc_type(types: &[DataType]) -> DataType {
    match types.first() {
        Some(t) if t.is_numeric() => DataType::Float64,
        _ => DataType::Date32,
    }
}

/// TRUNC: a timestamp's date ("TRUNC function"), or a number cut to `places` decimal places
/// ("TRUNC function" in the math functions).
fn trunc(a: &[ScalarValue]) -> Result<ScalarValue> {
    if a[0].data_type().is_numeric() {
        let places = a.get(1).and_then(int).unwrap_or(0);
        let Some(x) = float(&a[0].cast_to(&DataType::Float64)?) else {
            return Ok(ScalarValue::Float64(None));
        };
        let scale = 10f64.powi(places as i32);
        return Ok(ScalarValue::Float64(Some((x * scale).trunc() / scale)));
    }
    Ok(match as_time(&a[0])? {
        Some(t) => date(t.date()),
        None => ScalarValue::Date32(None),
    })
}

/// DATE_TRUNC to the millennium, century or decade, which DataFusion's does not take: the
/// first day of the first year of it (2001 for the third millennium, as Redshift counts).
fn date_trunc_years(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(part), Some(t)) = (part_of("date_trunc", &a[0])?, time(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    let year = t.year();
    let first = match part {
        Part::Millennium => (year - 1).div_euclid(1000) * 1000 + 1,
        Part::Century => (year - 1).div_euclid(100) * 100 + 1,
        Part::Decade => year.div_euclid(10) * 10,
        other => {
            return invalid(
                "date_trunc",
                format!("{} is not a part it truncates to here", other.name()),
            )
        }
    };
    match NaiveDate::from_ymd_opt(first, 1, 1) {
        Some(d) => Ok(timestamp(d.and_time(chrono::NaiveTime::MIN))),
        None => invalid("date_trunc", "out of range"),
    }
}

/// An interval's text (`3 days`, `1 year 2 mons`, `1 week`) in microseconds, a month counted
/// as 30 days and a year as 12 months, as intervals compare.
fn interval_micros(text: &str) -> Option<i128> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return None;
    }
    let day = 86_400_000_000i128;
    let mut total = 0i128;
    for pair in words.chunks(2) {
        let n: f64 = pair[0].parse().ok()?;
        let unit = match Part::parse(pair[1])? {
            Part::Millennium => 360 * 1000 * day,
            Part::Century => 360 * 100 * day,
            Part::Decade => 360 * 10 * day,
            Part::Year => 360 * day,
            Part::Quarter => 90 * day,
            Part::Month => 30 * day,
            Part::Week => 7 * day,
            Part::Day => day,
            Part::Hour => 3_600_000_000,
            Part::Minute => 60_000_000,
            Part::Second => 1_000_000,
            Part::Millisecond => 1_000,
            Part::Microsecond => 1,
            _ => return None,
        };
        total += (n * unit as f64) as i128;
    }
    Some(total)
}

/// INTERVAL_CMP: -1, 0 or 1 as the first interval is shorter, equal or longer.
fn interval_cmp(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(x), Some(y)) = (text(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Int64(None));
    };
    match (interval_micros(x), interval_micros(y)) {
        (Some(x), Some(y)) => Ok(ScalarValue::Int64(Some(x.cmp(&y) as i64))),
        _ => invalid(
            "interval_cmp",
            format!("invalid interval: \"{x}\" or \"{y}\""),
        ),
    }
}

fn last_of_month(d: NaiveDate) -> NaiveDate {
    let first = d.with_day(1).expect("day 1");
    first + Months::new(1) - Duration::days(1)
}

/// ADD_MONTHS: like DATEADD by months, except that the last day of a month goes to the last day
/// of the month it lands in ("ADD_MONTHS function").
fn add_months(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(t), Some(n)) = (time(&a[0]), int(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    let Some(moved) = add_months_clamped(t, n) else {
        return invalid("add_months", "the result is out of range");
    };
    Ok(timestamp(if t.date() == last_of_month(t.date()) {
        last_of_month(moved.date()).and_time(t.time())
    } else {
        moved
    }))
}

/// MONTHS_BETWEEN: whole months when the days of the month match or both are last days, else
/// the difference of the days over a 31-day month ("MONTHS_BETWEEN function").
fn months_between(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(x), Some(y)) = (time(&a[0]), time(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    let months = f64::from((x.year() - y.year()) * 12 + x.month() as i32 - y.month() as i32);
    let both_last = x.date() == last_of_month(x.date()) && y.date() == last_of_month(y.date());
    let value = if x.day() == y.day() || both_last {
        months
    } else {
        // The fraction counts the time of day too: 4 days less 4.5 hours is (4 - 4.5/24)/31.
        let seconds = |t: NaiveDateTime| f64::from(t.num_seconds_from_midnight());
        let days = f64::from(x.day()) - f64::from(y.day()) + (seconds(x) - seconds(y)) / 86_400.0;
        months + days / 31.0
    };
    Ok(ScalarValue::Float64(Some(value)))
}

/// NEXT_DAY: the first date after the given one that falls on the named day ("NEXT_DAY
/// function": the name or an abbreviation of it).
fn next_day(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(t), Some(name)) = (time(&a[0]), text(&a[1])) else {
        return Ok(ScalarValue::Date32(None));
    };
    let name = name.trim().to_ascii_lowercase();
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let Some(wanted) = DAYS
        .iter()
        .position(|d| name.len() >= 2 && d.starts_with(name.as_str()))
    else {
        return invalid("next_day", format!("'{name}' is not a day of the week"));
    };
    let today = t.weekday().num_days_from_monday() as i64;
    let ahead = (wanted as i64 - today).rem_euclid(7);
    Ok(date(
        t.date() + Duration::days(if ahead == 0 { 7 } else { ahead }),
    ))
}

/// -1, 0 or 1 as the first is before, equal to or after the second (DATE_CMP, TIMESTAMP_CMP…).
fn compare(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(x), Some(y)) = (time(&a[0]), time(&a[1])) else {
        return Ok(ScalarValue::Null);
    };
    Ok(ScalarValue::Int64(Some(x.cmp(&y) as i64)))
}

/// A zone as CONVERT_TIMEZONE takes it: a name from the time zone database, an abbreviation
/// (a fixed offset), or POSIX style `UTC+3` where a positive offset is west of Greenwich
/// ("CONVERT_TIMEZONE function", "Time zone names and abbreviations").
enum Zone {
    Named(chrono_tz::Tz),
    Fixed(chrono::FixedOffset),
}

/// Abbreviations and their fixed offsets east of UTC, in hours.
const ABBREVIATIONS: &[(&str, i32)] = &[
    ("utc", 0),
    ("gmt", 0),
    ("z", 0),
    ("est", -5),
    ("edt", -4),
    ("cst", -6),
    ("cdt", -5),
    ("mst", -7),
    ("mdt", -6),
    ("pst", -8),
    ("pdt", -7),
    ("akst", -9),
    ("akdt", -8),
    ("hst", -10),
    ("cet", 1),
    ("cest", 2),
    ("eet", 2),
    ("eest", 3),
    ("bst", 1),
    ("ist", 2),
    ("jst", 9),
    ("kst", 9),
    ("aest", 10),
    ("aedt", 11),
    ("nzst", 12),
    ("nzdt", 13),
];

fn zone(name: &str) -> Result<Zone> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, hours)) = ABBREVIATIONS.iter().find(|(a, _)| *a == lower) {
        return Ok(Zone::Fixed(
            chrono::FixedOffset::east_opt(hours * 3600).expect("a table offset under a day"),
        ));
    }
    // POSIX style: any name, then the offset west of Greenwich (`UTC+3`, `NEWZONE -2:15`,
    // `America/Los_Angeles+2`: the name is only a label).
    if let Some(sign) = lower.rfind(['+', '-']) {
        let label = lower[..sign].trim_end();
        if label.starts_with(|c: char| c.is_ascii_alphabetic()) {
            if let Some(west) = posix_offset(&lower[sign..]) {
                return Ok(Zone::Fixed(
                    chrono::FixedOffset::west_opt(west).expect("posix_offset keeps under a day"),
                ));
            }
        }
    }
    match chrono_tz::Tz::from_str_insensitive(name.trim()) {
        Ok(tz) => Ok(Zone::Named(tz)),
        Err(_) => invalid(
            "convert_timezone",
            format!("time zone \"{name}\" not recognized"),
        ),
    }
}

/// `+3`, `-03:30`: seconds west of UTC, POSIX's sign.
fn posix_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    // An offset is less than a day.
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

fn to_utc(zone: &Zone, local: NaiveDateTime) -> Option<NaiveDateTime> {
    use chrono::TimeZone;
    match zone {
        Zone::Named(tz) => tz
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.naive_utc()),
        Zone::Fixed(offset) => offset
            .from_local_datetime(&local)
            .single()
            .map(|t| t.naive_utc()),
    }
}

fn from_utc(zone: &Zone, utc: NaiveDateTime) -> NaiveDateTime {
    use chrono::TimeZone;
    match zone {
        Zone::Named(tz) => tz.from_utc_datetime(&utc).naive_local(),
        Zone::Fixed(offset) => offset.from_utc_datetime(&utc).naive_local(),
    }
}

/// CONVERT_TIMEZONE(['source',] 'target', timestamp): the wall-clock time in the target zone of
/// the source zone's (UTC's if not given) wall-clock time.
fn convert_timezone(a: &[ScalarValue]) -> Result<ScalarValue> {
    let (source, target, t) = match a {
        [target, t] => (None, target, t),
        [source, target, t] => (Some(source), target, t),
        _ => return invalid("convert_timezone", "takes 2 or 3 arguments"),
    };
    let text_of = |v: &ScalarValue| -> Result<Option<String>> {
        Ok(text(&v.cast_to(&DataType::Utf8)?).map(str::to_owned))
    };
    let Some(target) = text_of(target)? else {
        return Ok(ScalarValue::Null);
    };
    let source = match source {
        Some(s) => match text_of(s)? {
            Some(s) => Some(s),
            None => return Ok(ScalarValue::Null),
        },
        None => None,
    };
    let Some(t) = as_time(t)? else {
        return Ok(ScalarValue::Null);
    };
    let utc = match source {
        Some(source) => match to_utc(&zone(&source)?, t) {
            Some(utc) => utc,
            None => return invalid("convert_timezone", "the time does not exist in its zone"),
        },
        None => t,
    };
    Ok(timestamp(from_utc(&zone(&target)?, utc)))
}
