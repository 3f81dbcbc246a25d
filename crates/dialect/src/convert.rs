//! Redshift's implicit conversions: text read as a date or a timestamp in any of the forms
//! Redshift accepts ("Date, time, and timestamp literals" in "Datetime types", Amazon Redshift
//! Database Developer Guide: `1999-01-08`, `1/8/1999`, `January 8, 1999`, `20080215`, …), and
//! dates, timestamps and numbers read as text where a string function wants text, printed as
//! Redshift prints them (`2008-01-25 14:30:00`, not Arrow's `2008-01-25T14:30:00`).
//!
//! DataFusion casts text to dates and timestamps itself, through Arrow, which takes ISO 8601
//! only; an analyzer rule ([`RedshiftCasts`]) sends every cast to a date or a timestamp
//! through [`to_date`] / [`to_timestamp`] instead, which try Arrow's cast first and read
//! Redshift's other forms where it fails.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TryCast, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use regex::Regex;
use std::sync::{Arc, LazyLock};

// `%y` before `%Y`: chrono's `%Y` takes a year of one or two digits too, so `01/02/00` would
// be the year 0; `%y` fails on a four-digit year (digits are left over) and reads 00–69 as
// 2000–2069, 70–99 as 1970–1999. That is PostgreSQL's rule ("Date/Time Input Interpretation",
// PostgreSQL documentation); Redshift's datetime pages state none, so it is listed in
// ARCHITECTURE's differences as unchecked.
const DATE_FORMATS: &[&str] = &[
    "%m/%d/%y",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%m.%d.%Y",
    "%Y%m%d",
    "%b %d, %Y",
    "%b %d,%Y",
    "%B %d, %Y",
    "%B %d,%Y",
    "%b %d %Y",
    "%B %d %Y",
    "%Y-%b-%d",
    "%b-%d-%Y",
    "%d-%b-%Y",
    "%d %b %Y",
    "%d %B %Y",
];

static SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^\s*(?P<date>.+?)
        (?:[\sT]+(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?P<half>[AaPp]\.?[Mm]\.?)?
           (?:\s*[+-]\d{1,2}(?::?\d{2})?)?)?
        (?:\s+[A-Za-z]{1,5})?\s*$",
    )
    .expect("a pattern")
});

/// A timestamp in any form Redshift reads; a zone, if given, is dropped (a TIMESTAMP has none).
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let shape = SHAPE.captures(text)?;
    let date_text = shape.name("date")?.as_str().trim();
    let date = DATE_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(date_text, f).ok())?;
    let time = match shape.name("time") {
        None => NaiveTime::MIN,
        Some(t) => {
            let t = t.as_str();
            let mut time = NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
                .ok()?;
            if let Some(half) = shape.name("half") {
                use chrono::Timelike;
                let pm = half.as_str().to_ascii_lowercase().starts_with('p');
                let hour = time.hour() % 12 + if pm { 12 } else { 0 };
                time = time.with_hour(hour)?;
            }
            time
        }
    };
    Some(date.and_time(time))
}

fn cast_options() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// `array` as `to`, text read in Redshift's forms where Arrow's cast does not read it.
fn convert(array: &ArrayRef, to: &DataType, type_name: &str) -> Result<ArrayRef> {
    if let Ok(done) = cast_with_options(array, to, &cast_options()) {
        return Ok(done);
    }
    let text = cast_with_options(array, &DataType::Utf8, &cast_options())?;
    let text = text.as_any().downcast_ref::<StringArray>().expect("text");
    let micros: Vec<Option<i64>> = text
        .iter()
        .map(|value| match value {
            None => Ok(None),
            Some(s) => match parse_timestamp(s) {
                Some(t) => Ok(Some(t.and_utc().timestamp_micros())),
                None => exec_err!("invalid input syntax for type {type_name}: \"{s}\""),
            },
        })
        .collect::<Result<_>>()?;
    let stamps: ArrayRef = Arc::new(datafusion::arrow::array::TimestampMicrosecondArray::from(
        micros,
    ));
    Ok(cast_with_options(&stamps, to, &cast_options())?)
}

/// Converts its one argument to `to` (a date, or a timestamp without zone).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReadTime {
    name: &'static str,
    to: DataType,
    signature: Signature,
}

impl ReadTime {
    fn udf(name: &'static str, to: DataType) -> ScalarUDF {
        ScalarUDF::new_from_impl(ReadTime {
            name,
            to,
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for ReadTime {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.to.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let type_name = if self.to == DataType::Date32 {
            "date"
        } else {
            "timestamp"
        };
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(convert(a, &self.to, type_name)?)),
            ColumnarValue::Scalar(s) => {
                let a = convert(&s.to_array()?, &self.to, type_name)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?))
            }
        }
    }
}

/// Reads a value as a date, as Redshift does.
pub fn to_date() -> ScalarUDF {
    ReadTime::udf("redshift_date", DataType::Date32)
}

/// Reads a value as a timestamp, as Redshift does.
pub fn to_timestamp() -> ScalarUDF {
    ReadTime::udf(
        "redshift_timestamp",
        DataType::Timestamp(TimeUnit::Microsecond, None),
    )
}

/// Sends every cast to a date or a timestamp without zone, the planner's own (a literal
/// compared with a date column) and the statement's (`'1/8/1999'::date`), through
/// [`to_date`] / [`to_timestamp`].
#[derive(Debug)]
pub struct RedshiftCasts {
    date: Arc<ScalarUDF>,
    timestamp: Arc<ScalarUDF>,
}

impl Default for RedshiftCasts {
    fn default() -> Self {
        RedshiftCasts {
            date: Arc::new(to_date()),
            timestamp: Arc::new(to_timestamp()),
        }
    }
}

impl RedshiftCasts {
    fn rewrite(&self, inner: Expr, to: &DataType) -> Transformed<Expr> {
        let call = |udf: &Arc<ScalarUDF>, e: Expr| {
            Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![e]))
        };
        match to {
            DataType::Date32 => Transformed::yes(call(&self.date, inner)),
            DataType::Timestamp(_, None) => Transformed::yes(Expr::Cast(Cast::new(
                Box::new(call(&self.timestamp, inner)),
                to.clone(),
            ))),
            _ => unreachable!("only dates and timestamps"),
        }
    }

    fn is_ours(&self, e: &Expr) -> bool {
        matches!(e, Expr::ScalarFunction(f) if f.func.name() == self.timestamp.name() || f.func.name() == self.date.name())
    }
}

impl AnalyzerRule for RedshiftCasts {
    fn name(&self) -> &str {
        "redshift_casts"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        let wanted = |t: &DataType| matches!(t, DataType::Date32 | DataType::Timestamp(_, None));
        plan.transform_up_with_subqueries(|plan| {
            // The plan's columns keep their names (a projection's parent refers to them).
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|e| match e {
                    Expr::Cast(Cast { expr, field })
                        if wanted(field.data_type()) && !self.is_ours(&expr) =>
                    {
                        Ok(self.rewrite(*expr, field.data_type()))
                    }
                    Expr::TryCast(TryCast { expr, field })
                        if wanted(field.data_type()) && !self.is_ours(&expr) =>
                    {
                        Ok(self.rewrite(*expr, field.data_type()))
                    }
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

/// A value as text, as Redshift prints it: what a string function reads when given a date, a
/// timestamp or a number.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsText {
    signature: Signature,
}

pub fn as_text() -> ScalarUDF {
    ScalarUDF::new_from_impl(AsText {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

fn text_of(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.clone()),
        DataType::Timestamp(_, None) => {
            let micros = cast_with_options(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &cast_options(),
            )?;
            let micros = micros
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .expect("timestamps");
            let text: StringArray = micros
                .iter()
                .map(|v| {
                    v.and_then(chrono::DateTime::from_timestamp_micros)
                        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
                })
                .collect();
            Ok(Arc::new(text))
        }
        _ => Ok(cast_with_options(array, &DataType::Utf8, &cast_options())?),
    }
}

impl ScalarUDFImpl for AsText {
    fn name(&self) -> &str {
        "redshift_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(text_of(a)?)),
            ColumnarValue::Scalar(s) => {
                let a = text_of(&s.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn redshift_s_date_forms_are_read() {
        for (text, want) in [
            ("2008-06-01", "2008-06-01 00:00:00"),
            ("06/01/2008", "2008-06-01 00:00:00"),
            ("8/2/2003", "2003-08-02 00:00:00"),
            ("Jun 1,2008", "2008-06-01 00:00:00"),
            ("June 1, 2008", "2008-06-01 00:00:00"),
            ("20081231", "2008-12-31 00:00:00"),
            ("01/02/00", "2000-01-02 00:00:00"),
            ("1/8/99", "1999-01-08 00:00:00"),
            ("Jun 1,2008 09:59:59 EST", "2008-06-01 09:59:59"),
            ("2008-06-01 9:05 PM", "2008-06-01 21:05:00"),
            ("2008-06-01T09:05:07.25", "2008-06-01 09:05:07.250"),
        ] {
            let got = parse_timestamp(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                got.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
                want,
                "{text}"
            );
        }
        assert_eq!(parse_timestamp("yesterday-ish"), None);
    }
}
