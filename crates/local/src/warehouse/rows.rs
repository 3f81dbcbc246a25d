//! A result's rows as the Data API hands them out: each column named with the Redshift type
//! `GetStatementResult` gives it, each value as JSON of that type.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Schema,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use export_core::ports::ResultColumn;
use serde_json::Value;

/// Each column's name and the Redshift type the Data API would name it by.
pub fn columns(schema: &Schema) -> Vec<ResultColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ResultColumn {
            name: f.name().clone(),
            type_name: redshift_type(f.data_type()).into(),
        })
        .collect()
}

/// The Redshift type name of an Arrow type (`ColumnMetadata.typeName`).
pub fn redshift_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int8",
        DataType::Int32 | DataType::UInt16 => "int4",
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => "int2",
        DataType::Float64 => "float8",
        DataType::Float32 | DataType::Float16 => "float4",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Boolean => "bool",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        _ => "varchar",
    }
}

/// Appends the batch's rows, each value typed by its column: integers and floats as numbers,
/// booleans as booleans, NULL as null, the rest as Redshift prints it (decimals exactly,
/// dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS[.ffffff]`).
pub fn append_rows(
    batch: &RecordBatch,
    rows: &mut Vec<Vec<Value>>,
) -> Result<(), datafusion::arrow::error::ArrowError> {
    let options = FormatOptions::new()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        let mut values = Vec::with_capacity(batch.num_columns());
        for (column, formatter) in batch.columns().iter().zip(&formatters) {
            values.push(value(column.as_ref(), row, || {
                formatter.value(row).to_string()
            }));
        }
        rows.push(values);
    }
    Ok(())
}

fn value(array: &dyn Array, row: usize, text: impl FnOnce() -> String) -> Value {
    // A NULL-typed column (`NULL AS t`) has no null buffer: every value in it is NULL.
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Value::Null;
    }
    macro_rules! number {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    let float = |v: f64| {
        serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
    };
    match array.data_type() {
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        _ => Value::String(text()),
    }
}
