//! AVG as Redshift answers it: over integers, an integer, the average with its fraction cut off
//! ("AVG function": "the return type for INT… arguments is… integer"; the average of 1, 2 and
//! 5 is 2). DataFusion's AVG answers a double; this wraps it, converting its answer.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};
use std::sync::Arc;

#[derive(Debug)]
struct Average {
    inner: Arc<AggregateUDF>,
    signature: Signature,
}

impl PartialEq for Average {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Average {}
impl std::hash::Hash for Average {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "redshift avg".hash(state);
    }
}

pub fn avg() -> AggregateUDF {
    AggregateUDF::new_from_impl(Average {
        inner: avg_udaf(),
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

fn float_field(f: &FieldRef) -> FieldRef {
    Arc::new(Field::new(f.name(), DataType::Float64, true))
}

impl AggregateUDFImpl for Average {
    fn name(&self) -> &str {
        "avg"
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [t] if t.is_integer() => Ok(vec![DataType::Int64]),
            // The rest as DataFusion's AVG takes them: decimals as they are, else doubles.
            [t @ (DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..))] => Ok(vec![t.clone()]),
            [t] if t.is_numeric() || *t == DataType::Null => Ok(vec![DataType::Float64]),
            [t] => datafusion::common::plan_err!("AVG takes a number, not {t}"),
            _ => datafusion::common::plan_err!("AVG takes one argument"),
        }
    }
    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        match types {
            [t] if t.is_integer() => Ok(DataType::Int64),
            _ => self.inner.return_type(types),
        }
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if !args.expr_fields[0].data_type().is_integer() {
            return self.inner.accumulator(args);
        }
        let fields: Vec<FieldRef> = args.expr_fields.iter().map(float_field).collect();
        let inner = self.inner.accumulator(AccumulatorArgs {
            return_field: float_field(&args.return_field),
            expr_fields: &fields,
            ..args
        })?;
        Ok(Box::new(Truncated { inner }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        if !args.input_fields[0].data_type().is_integer() {
            return self.inner.state_fields(args);
        }
        let fields: Vec<FieldRef> = args.input_fields.iter().map(float_field).collect();
        self.inner.state_fields(StateFieldsArgs {
            input_fields: &fields,
            return_field: float_field(&args.return_field),
            ..args
        })
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.expr_fields[0].data_type().is_integer()
            && self.inner.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }
}

/// DataFusion's AVG over the integers as doubles, its answer cut to an integer.
#[derive(Debug)]
struct Truncated {
    inner: Box<dyn Accumulator>,
}

fn floats(values: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    Ok(values
        .iter()
        .map(|v| cast(v, &DataType::Float64))
        .collect::<std::result::Result<_, _>>()?)
}

impl Accumulator for Truncated {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(&floats(values)?)
    }
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(&floats(values)?)
    }
    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.inner.evaluate()? {
            ScalarValue::Float64(Some(x)) => ScalarValue::Int64(Some(x.trunc() as i64)),
            _ => ScalarValue::Int64(None),
        })
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }
}
