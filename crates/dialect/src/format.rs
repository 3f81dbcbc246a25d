//! TO_CHAR and TO_DATE with Redshift's datetime format strings ("Datetime format strings",
//! Amazon Redshift Database Developer Guide): `YYYY-MM-DD HH24:MI:SS`, `MONTH`, `DY`, `DDD`,
//! `IW`, `CC`…, where DataFusion's own take chrono's `%Y-%m-%d`.

use crate::rowfn::{date, invalid, text, time, Arg, RowFn};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ScalarUDF;

pub fn functions() -> Vec<ScalarUDF> {
    use Arg::*;
    vec![
        RowFn::udf("to_char", &[Any, Text], 2, |_| DataType::Utf8, to_char),
        RowFn::udf(
            "to_date",
            &[Text, Text, Any],
            1,
            |_| DataType::Date32,
            to_date,
        ),
    ]
}

/// The template's pieces, longest names first so `HH24` is not read as `HH` then `24`.
const FIELDS: &[&str] = &[
    "HH24", "HH12", "YYYY", "IYYY", "MONTH", "Month", "month", "DDD", "MON", "Mon", "mon", "DAY",
    "Day", "day", "A.M.", "P.M.", "a.m.", "p.m.", "YYY", "IDDD", "HH", "MI", "SS", "MS", "US",
    "AM", "PM", "am", "pm", "YY", "MM", "DD", "DY", "Dy", "dy", "ID", "IW", "WW", "CC", "TZ", "tz",
    "Y", "D", "W", "Q", "J",
];

enum Piece<'a> {
    Field(&'a str, bool),
    Literal(&'a str),
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        // FM: no padding for the field that follows.
        let (fill_mode, after) = match rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            Some(after) => (true, after),
            None => (false, rest),
        };
        if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push(Piece::Literal(&quoted[..end]));
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        // Names keep their case (it sets the output's); numeric fields match in any case.
        let upper = after.get(..4.min(after.len())).map(str::to_ascii_uppercase);
        let field = FIELDS.iter().find(|f| after.starts_with(**f)).or_else(|| {
            FIELDS.iter().find(|f| {
                !f.chars().any(|c| c.is_ascii_lowercase())
                    && !matches!(**f, "MONTH" | "MON" | "DAY" | "DY")
                    && upper.as_deref().is_some_and(|u| u.starts_with(**f))
            })
        });
        match field {
            Some(field) => {
                out.push(Piece::Field(field, fill_mode));
                rest = &after[field.len()..];
            }
            None => {
                let c = rest.chars().next().expect("not empty");
                out.push(Piece::Literal(&rest[..c.len_utf8()]));
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A name in the case the field is written in: `MONTH` upper, `Month` capitalised, `month`
/// lower; padded to `width` unless in fill mode.
fn name(field: &str, name: &str, width: usize, fill: bool) -> String {
    let cased = if field.chars().all(|c| c.is_ascii_uppercase()) {
        name.to_uppercase()
    } else if field.chars().all(|c| c.is_ascii_lowercase()) {
        name.to_lowercase()
    } else {
        name.to_owned()
    };
    if fill {
        cased
    } else {
        format!("{cased:<width$}")
    }
}

fn number(n: i64, width: usize, fill: bool) -> String {
    if fill {
        n.to_string()
    } else {
        format!("{n:0width$}")
    }
}

fn format_time(t: NaiveDateTime, template: &str) -> String {
    let mut out = String::new();
    let hour12 = |h: u32| i64::from(if h.is_multiple_of(12) { 12 } else { h % 12 });
    for piece in pieces(template) {
        let Piece::Field(field, fill) = piece else {
            if let Piece::Literal(l) = piece {
                out.push_str(l);
            }
            continue;
        };
        let month = MONTHS[t.month0() as usize];
        let day = DAYS[t.weekday().num_days_from_sunday() as usize];
        let text = match field {
            "YYYY" => number(i64::from(t.year()), 4, fill),
            "IYYY" => number(i64::from(t.iso_week().year()), 4, fill),
            "YYY" => number(i64::from(t.year() % 1000), 3, fill),
            "YY" => number(i64::from(t.year() % 100), 2, fill),
            "Y" => number(i64::from(t.year() % 10), 1, fill),
            "MONTH" | "Month" | "month" => name(field, month, 9, fill),
            "MON" | "Mon" | "mon" => name(field, &month[..3], 3, fill),
            "MM" => number(i64::from(t.month()), 2, fill),
            "DAY" | "Day" | "day" => name(field, day, 9, fill),
            "DY" | "Dy" | "dy" => name(field, &day[..3], 3, fill),
            "DDD" => number(i64::from(t.ordinal()), 3, fill),
            "IDDD" => number(
                i64::from(t.iso_week().week0() * 7 + t.weekday().num_days_from_monday() + 1),
                3,
                fill,
            ),
            "DD" => number(i64::from(t.day()), 2, fill),
            "D" => number(i64::from(t.weekday().number_from_sunday()), 1, fill),
            "ID" => number(i64::from(t.weekday().number_from_monday()), 1, fill),
            "W" => number(i64::from((t.day() - 1) / 7 + 1), 1, fill),
            "WW" => number(i64::from((t.ordinal() - 1) / 7 + 1), 2, fill),
            "IW" => number(i64::from(t.iso_week().week()), 2, fill),
            "Q" => number(i64::from(t.month0() / 3 + 1), 1, fill),
            "CC" => number(i64::from((t.year() - 1) / 100 + 1), 2, fill),
            "J" => number(i64::from(t.date().num_days_from_ce()) + 1_721_425, 1, fill),
            "HH24" => number(i64::from(t.hour()), 2, fill),
            "HH" | "HH12" => number(hour12(t.hour()), 2, fill),
            "MI" => number(i64::from(t.minute()), 2, fill),
            "SS" => number(i64::from(t.second()), 2, fill),
            "MS" => number(i64::from(t.nanosecond() / 1_000_000), 3, fill),
            "US" => number(i64::from(t.nanosecond() / 1_000), 6, fill),
            "AM" | "PM" => (if t.hour() < 12 { "AM" } else { "PM" }).to_owned(),
            "am" | "pm" => (if t.hour() < 12 { "am" } else { "pm" }).to_owned(),
            "A.M." | "P.M." => (if t.hour() < 12 { "A.M." } else { "P.M." }).to_owned(),
            "a.m." | "p.m." => (if t.hour() < 12 { "a.m." } else { "p.m." }).to_owned(),
            // A timestamp without zone has no zone to print.
            "TZ" | "tz" => String::new(),
            other => other.to_owned(),
        };
        out.push_str(&text);
    }
    out
}

/// TO_CHAR(timestamp or date, format) ("TO_CHAR"); a number's TO_CHAR is refused by name:
/// numeric format strings are not implemented here.
fn to_char(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(template) = text(&a[1]) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let value = &a[0];
    if value.is_null() {
        return Ok(ScalarValue::Utf8(None));
    }
    match value.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) | DataType::Utf8 => {
            let t = match value {
                ScalarValue::Utf8(Some(s)) => crate::convert::parse_timestamp(s),
                other => time(&other.cast_to(&crate::rowfn::TIME)?),
            };
            match t {
                Some(t) => Ok(ScalarValue::Utf8(Some(format_time(t, template)))),
                None => invalid("to_char", format!("cannot read {value} as a timestamp")),
            }
        }
        other => invalid(
            "to_char",
            format!("numeric format strings are not supported by the local warehouse ({other})"),
        ),
    }
}

/// TO_DATE(text, format [, is_strict]): the date the text spells in the format. Fields read
/// as many digits as they print; literals match any one character.
fn to_date(a: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(s) = text(&a[0]) else {
        return Ok(ScalarValue::Date32(None));
    };
    let Some(template) = a.get(1).map(text) else {
        // No format: the text in any form Redshift reads a date in.
        return match crate::convert::parse_timestamp(s) {
            Some(t) => Ok(date(t.date())),
            None => invalid(
                "to_date",
                format!("invalid input syntax for type date: \"{s}\""),
            ),
        };
    };
    let Some(template) = template else {
        return Ok(ScalarValue::Date32(None));
    };
    let (mut year, mut month, mut day, mut doy) = (1i32, 1u32, 1u32, None::<u32>);
    let mut rest = s.trim_start();
    let digits = |rest: &mut &str, max: usize| -> Option<u32> {
        let n = rest
            .chars()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        let value = rest[..n].parse().ok()?;
        *rest = &rest[n..];
        Some(value)
    };
    for piece in pieces(template) {
        let bad =
            || invalid::<ScalarValue>("to_date", format!("\"{s}\" does not match \"{template}\""));
        match piece {
            Piece::Literal(l) => {
                let n = l.chars().count().min(rest.chars().count());
                let skip: usize = rest.chars().take(n).map(char::len_utf8).sum();
                rest = &rest[skip..];
            }
            Piece::Field(field, _) => match field {
                "YYYY" | "IYYY" => match digits(&mut rest, 4) {
                    Some(y) => year = y as i32,
                    None => return bad(),
                },
                "YY" => match digits(&mut rest, 2) {
                    Some(y) => year = 2000 + y as i32 - if y >= 70 { 100 } else { 0 },
                    None => return bad(),
                },
                "MM" => match digits(&mut rest, 2) {
                    Some(m) => month = m,
                    None => return bad(),
                },
                "DD" => match digits(&mut rest, 2) {
                    Some(d) => day = d,
                    None => return bad(),
                },
                "DDD" => match digits(&mut rest, 3) {
                    Some(d) => doy = Some(d),
                    None => return bad(),
                },
                "MON" | "Mon" | "mon" | "MONTH" | "Month" | "month" => {
                    let lower = rest.to_ascii_lowercase();
                    let Some(i) = MONTHS
                        .iter()
                        .position(|m| lower.starts_with(&m[..3].to_ascii_lowercase()))
                    else {
                        return bad();
                    };
                    month = i as u32 + 1;
                    let full = MONTHS[i].to_ascii_lowercase();
                    let taken = if field.len() > 3 && lower.starts_with(&full) {
                        full.len()
                    } else {
                        3
                    };
                    rest = &rest[taken..];
                }
                _ => {
                    // A field a date does not need (a time, a day name): its digits or letters.
                    let n = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .count();
                    rest = &rest[n..];
                }
            },
        }
    }
    // Not strict (the default): a day past the month's end runs into the next month
    // ("TO_DATE function": 20010631 is 2001-07-01); strict, it is an error.
    let strict = matches!(a.get(2), Some(ScalarValue::Boolean(Some(true))));
    let d = match doy {
        Some(doy) => NaiveDate::from_yo_opt(year, doy),
        None if strict => NaiveDate::from_ymd_opt(year, month, day),
        None => NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|first| first.checked_add_signed(chrono::Duration::days(i64::from(day) - 1))),
    };
    match d {
        Some(d) => Ok(date(d)),
        None => invalid(
            "to_date",
            format!("\"{s}\" is not a date in \"{template}\""),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_print_as_redshift_prints_them() {
        let t = NaiveDate::from_ymd_opt(2009, 12, 31)
            .unwrap()
            .and_hms_opt(23, 15, 59)
            .unwrap();
        assert_eq!(
            format_time(t, "MONTH-DY-DD-YYYY HH12:MIPM"),
            "DECEMBER -THU-31-2009 11:15PM"
        );
        assert_eq!(format_time(t, "DDD"), "365");
        assert_eq!(format_time(t, "FMMonth \"the\" FMDD"), "December the 31");
    }
}
