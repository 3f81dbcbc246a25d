//! Redshift's date parts and their abbreviations, as the date and time functions take them
//! ("Date parts for date or timestamp functions", Amazon Redshift Database Developer Guide).

/// One date part, whatever it was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Millennium,
    Century,
    Decade,
    Epoch,
    Year,
    Quarter,
    Month,
    Week,
    DayOfWeek,
    DayOfYear,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Timezone,
    TimezoneHour,
    TimezoneMinute,
}

impl Part {
    /// The part a name or abbreviation stands for, in any case; `None` for a name Redshift
    /// does not take.
    pub fn parse(name: &str) -> Option<Part> {
        let name = name.trim().trim_matches('"').to_ascii_lowercase();
        Some(match name.as_str() {
            "millennium" | "millennia" | "mil" | "mils" => Part::Millennium,
            "century" | "centuries" | "c" | "cent" | "cents" => Part::Century,
            "decade" | "decades" | "dec" | "decs" => Part::Decade,
            "epoch" => Part::Epoch,
            "year" | "years" | "y" | "yr" | "yrs" => Part::Year,
            "quarter" | "quarters" | "qtr" | "qtrs" => Part::Quarter,
            "month" | "months" | "mon" | "mons" => Part::Month,
            "week" | "weeks" | "w" => Part::Week,
            "day of week" | "dayofweek" | "dow" | "dw" | "weekday" => Part::DayOfWeek,
            "day of year" | "dayofyear" | "doy" | "dy" | "yearday" => Part::DayOfYear,
            "day" | "days" | "d" => Part::Day,
            "hour" | "hours" | "h" | "hr" | "hrs" => Part::Hour,
            "minute" | "minutes" | "m" | "min" | "mins" => Part::Minute,
            "second" | "seconds" | "s" | "sec" | "secs" => Part::Second,
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "msecond" | "mseconds"
            | "millisec" | "millisecs" | "millisecon" => Part::Millisecond,
            "microsecond" | "microseconds" | "microsec" | "microsecs" | "microsecon"
            | "usecond" | "useconds" | "us" | "usec" | "usecs" => Part::Microsecond,
            "timezone" => Part::Timezone,
            "timezone_hour" => Part::TimezoneHour,
            "timezone_minute" => Part::TimezoneMinute,
            _ => return None,
        })
    }

    /// The part's full name, as the functions here take it.
    pub fn name(self) -> &'static str {
        match self {
            Part::Millennium => "millennium",
            Part::Century => "century",
            Part::Decade => "decade",
            Part::Epoch => "epoch",
            Part::Year => "year",
            Part::Quarter => "quarter",
            Part::Month => "month",
            Part::Week => "week",
            Part::DayOfWeek => "dayofweek",
            Part::DayOfYear => "dayofyear",
            Part::Day => "day",
            Part::Hour => "hour",
            Part::Minute => "minute",
            Part::Second => "second",
            Part::Millisecond => "millisecond",
            Part::Microsecond => "microsecond",
            Part::Timezone => "timezone",
            Part::TimezoneHour => "timezone_hour",
            Part::TimezoneMinute => "timezone_minute",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Part;

    #[test]
    fn abbreviations_name_their_part() {
        for (name, part) in [
            ("QTR", Part::Quarter),
            ("w", Part::Week),
            ("dow", Part::DayOfWeek),
            ("doy", Part::DayOfYear),
            ("mon", Part::Month),
            ("m", Part::Minute),
            ("ms", Part::Millisecond),
            ("us", Part::Microsecond),
            ("yrs", Part::Year),
            ("epoch", Part::Epoch),
        ] {
            assert_eq!(Part::parse(name), Some(part), "{name}");
        }
        assert_eq!(Part::parse("fortnight"), None);
    }
}
