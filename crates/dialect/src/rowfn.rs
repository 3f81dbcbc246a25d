//! Scalar functions written one row at a time: each takes its arguments as scalar values of
//! the types it asks for (DataFusion casts to them) and answers one value. Row at a time is
//! slower than DataFusion's vectorised kernels, and plenty for a local warehouse; it keeps each
//! Redshift function a plain function a reader can check against its documentation.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// What an argument is converted to before the function sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    Text,
    Int,
    /// A timestamp without time zone, in microseconds (a date is midnight).
    Time,
    /// Whatever it is: the function looks at the value's type.
    Any,
}

/// The row function: its arguments (the last ones optional), what it answers and how.
#[derive(Debug)]
pub struct RowFn {
    name: &'static str,
    signature: Signature,
    args: &'static [Arg],
    required: usize,
    returns: fn(&[DataType]) -> DataType,
    eval: fn(&[ScalarValue]) -> Result<ScalarValue>,
}

/// Equality and hashing by the `name` field: a function is told apart by its name, unique in
/// a session (DataFusion compares functions to find common subexpressions).
macro_rules! identity_by_name {
    ($type:ty) => {
        impl PartialEq for $type {
            fn eq(&self, other: &Self) -> bool {
                self.name == other.name
            }
        }
        impl Eq for $type {}
        impl std::hash::Hash for $type {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.name.hash(state);
            }
        }
    };
}
pub(crate) use identity_by_name;

identity_by_name!(RowFn);

/// The timestamp type every `Arg::Time` arrives as.
pub const TIME: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

impl RowFn {
    /// A function taking `args` (the first `required` of them required) and answering
    /// `returns` of the types it was given.
    pub fn udf(
        name: &'static str,
        args: &'static [Arg],
        required: usize,
        returns: fn(&[DataType]) -> DataType,
        eval: fn(&[ScalarValue]) -> Result<ScalarValue>,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(RowFn {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
            args,
            required,
            returns,
            eval,
        })
    }
}

impl ScalarUDFImpl for RowFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok((self.returns)(arg_types))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < self.required || arg_types.len() > self.args.len() {
            return plan_err!(
                "{} takes {} arguments, not {}",
                self.name.to_uppercase(),
                if self.required == self.args.len() {
                    self.required.to_string()
                } else {
                    format!("{} to {}", self.required, self.args.len())
                },
                arg_types.len()
            );
        }
        Ok(arg_types
            .iter()
            .zip(self.args)
            .map(|(given, wanted)| match wanted {
                Arg::Text => DataType::Utf8,
                Arg::Int => DataType::Int64,
                // A TIME stays one: the function reads it as that time on 1970-01-01.
                Arg::Time if matches!(given, DataType::Time64(_) | DataType::Time32(_)) => {
                    DataType::Time64(TimeUnit::Nanosecond)
                }
                Arg::Time => TIME,
                Arg::Any => given.clone(),
            })
            .collect())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let mut out = Vec::with_capacity(rows);
        let mut row = Vec::with_capacity(args.args.len());
        for i in 0..rows {
            row.clear();
            for arg in &args.args {
                row.push(match arg {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(a) => ScalarValue::try_from_array(a, i)?,
                });
            }
            let value = (self.eval)(&row)?;
            out.push(if value.is_null() {
                ScalarValue::try_from(args.return_type())?
            } else {
                value
            });
        }
        if all_scalar {
            return Ok(ColumnarValue::Scalar(out.pop().expect("one row")));
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(args.return_type()),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// The text of a `Text` argument; `None` if null.
pub fn text(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.as_deref(),
        _ => None,
    }
}

/// The number of an `Int` argument.
pub fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(n) => *n,
        _ => None,
    }
}

/// The number of a `Float` argument.
pub fn float(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Float64(n) => *n,
        _ => None,
    }
}

/// The moment of a `Time` argument.
pub fn time(v: &ScalarValue) -> Option<chrono::NaiveDateTime> {
    match v {
        ScalarValue::TimestampMicrosecond(Some(us), None) => {
            chrono::DateTime::from_timestamp_micros(*us).map(|t| t.naive_utc())
        }
        ScalarValue::Time64Nanosecond(Some(ns)) => chrono::DateTime::from_timestamp_nanos(*ns)
            .naive_utc()
            .into(),
        _ => None,
    }
}

/// A timestamp value.
pub fn timestamp(t: chrono::NaiveDateTime) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None)
}

/// Is the value a TIME (of day, no date)?
pub fn is_time_of_day(v: &ScalarValue) -> bool {
    matches!(v, ScalarValue::Time64Nanosecond(_))
}

/// A TIME value: the time of day of `t`.
pub fn time_of_day(t: chrono::NaiveDateTime) -> ScalarValue {
    use chrono::Timelike;
    let ns = i64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(t.nanosecond());
    ScalarValue::Time64Nanosecond(Some(ns))
}

/// A date value.
pub fn date(d: chrono::NaiveDate) -> ScalarValue {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    ScalarValue::Date32(Some((d - epoch).num_days() as i32))
}

/// An error naming the function, as Redshift's would.
pub fn invalid<T>(function: &str, message: impl std::fmt::Display) -> Result<T> {
    exec_err!("{}: {message}", function.to_uppercase())
}
