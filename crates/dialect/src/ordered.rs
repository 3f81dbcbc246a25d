//! Redshift's ordered-set aggregates where DataFusion has none or cannot run them as window
//! functions: `PERCENTILE_DISC … WITHIN GROUP` ("PERCENTILE_DISC function"), and `LISTAGG …
//! WITHIN GROUP` with `DISTINCT` or `OVER` ("LISTAGG function", "LISTAGG window function").
//! Each collects its rows and answers once it has them all, ordering them itself.

use datafusion::arrow::array::{Array, ArrayRef, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use std::cmp::Ordering;
use std::sync::Arc;

type Finish = fn(&[Vec<ScalarValue>]) -> Result<ScalarValue>;

/// An aggregate that collects every row of its arguments and answers with `finish`.
#[derive(Debug)]
struct Collect {
    name: &'static str,
    signature: Signature,
    returns: fn(&[DataType]) -> DataType,
    finish: Finish,
}

crate::rowfn::identity_by_name!(Collect);

impl AggregateUDFImpl for Collect {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok((self.returns)(arg_types))
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Rows {
            types: args
                .expr_fields
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            rows: Vec::new(),
            finish: self.finish,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(args
            .input_fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Arc::new(Field::new(
                    format!("{}_{i}", args.name),
                    DataType::List(Arc::new(Field::new_list_field(f.data_type().clone(), true))),
                    true,
                ))
            })
            .collect())
    }
}

#[derive(Debug)]
struct Rows {
    types: Vec<DataType>,
    rows: Vec<Vec<ScalarValue>>,
    finish: Finish,
}

impl Accumulator for Rows {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        for row in 0..n {
            self.rows.push(
                values
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row))
                    .collect::<Result<_>>()?,
            );
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        (self.finish)(&self.rows)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .rows
                .iter()
                .map(|r| r.iter().map(ScalarValue::size).sum::<usize>())
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let column: Vec<ScalarValue> = self.rows.iter().map(|r| r[i].clone()).collect();
                Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &column, t,
                )))
            })
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: Vec<&ListArray> = states
            .iter()
            .map(|s| s.as_any().downcast_ref::<ListArray>().expect("lists"))
            .collect();
        let n = lists.first().map_or(0, |l| l.len());
        for row in 0..n {
            let columns: Vec<ArrayRef> = lists.iter().map(|l| l.value(row)).collect();
            self.update_batch(&columns)?;
        }
        Ok(())
    }
}

fn udaf(name: &'static str, returns: fn(&[DataType]) -> DataType, finish: Finish) -> AggregateUDF {
    AggregateUDF::new_from_impl(Collect {
        name,
        signature: Signature::variadic_any(Volatility::Immutable),
        returns,
        finish,
    })
}

pub fn functions() -> Vec<AggregateUDF> {
    vec![
        udaf(
            "redshift_percentile_disc",
            |t| t[0].clone(),
            percentile_disc,
        ),
        udaf("redshift_listagg", |_| DataType::Utf8, listagg),
    ]
}

fn compare(a: &ScalarValue, b: &ScalarValue) -> Ordering {
    // NULLs last, as Redshift sorts ascending.
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// (value, fraction, descending): the first value, in order, whose cumulative distribution
/// reaches the fraction.
fn percentile_disc(rows: &[Vec<ScalarValue>]) -> Result<ScalarValue> {
    let Some(first) = rows.first() else {
        return Ok(ScalarValue::Null);
    };
    let fraction = match first[1].cast_to(&DataType::Float64)? {
        ScalarValue::Float64(Some(f)) if (0.0..=1.0).contains(&f) => f,
        _ => return exec_err!("PERCENTILE_DISC: the percentile must be between 0 and 1"),
    };
    let descending = matches!(first.get(2), Some(ScalarValue::Boolean(Some(true))));
    let mut values: Vec<&ScalarValue> = rows
        .iter()
        .map(|r| &r[0])
        .filter(|v| !v.is_null())
        .collect();
    if values.is_empty() {
        return first[0].data_type().try_into();
    }
    values.sort_by(|a, b| {
        let o = compare(a, b);
        if descending {
            o.reverse()
        } else {
            o
        }
    });
    let n = values.len() as f64;
    let at = ((fraction * n).ceil() as usize).clamp(1, values.len()) - 1;
    Ok(values[at].clone())
}

/// (value, delimiter, directions, distinct, key…): the values joined in the keys' order, each
/// key ascending (`a`) or descending (`d`) as `directions` says; with `distinct`, a value once.
fn listagg(rows: &[Vec<ScalarValue>]) -> Result<ScalarValue> {
    let Some(first) = rows.first() else {
        return Ok(ScalarValue::Utf8(None));
    };
    let text = |v: &ScalarValue| -> Result<Option<String>> {
        Ok(match v.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(s) => s,
            _ => None,
        })
    };
    let delimiter = text(&first[1])?.unwrap_or_default();
    let directions: Vec<bool> = text(&first[2])?
        .unwrap_or_default()
        .chars()
        .map(|c| c == 'd')
        .collect();
    let distinct = matches!(first[3], ScalarValue::Boolean(Some(true)));
    let mut ordered: Vec<&Vec<ScalarValue>> = rows.iter().filter(|r| !r[0].is_null()).collect();
    ordered.sort_by(|a, b| {
        for (i, descending) in directions.iter().enumerate() {
            let o = compare(&a[4 + i], &b[4 + i]);
            let o = if *descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    let mut seen = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for row in ordered {
        let value = text(&row[0])?.unwrap_or_default();
        if distinct {
            if seen.contains(&value) {
                continue;
            }
            seen.push(value.clone());
        }
        out.push(value);
    }
    if out.is_empty() {
        return Ok(ScalarValue::Utf8(None));
    }
    Ok(ScalarValue::Utf8(Some(out.join(&delimiter))))
}
