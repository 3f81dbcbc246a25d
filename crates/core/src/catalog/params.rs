//! Parameter types, and the checking of a request's values against them: each value is
//! checked against its declared type, then turned into a SQL literal by [`crate::sql`].

use super::Export;
use crate::sql::Literal;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The longest text value (in characters) any parameter may declare: UNLOAD's whole statement
/// is bounded, and a value this size is already far past any sensible lookup key.
pub const MAX_TEXT_LENGTH: usize = 4096;
/// The most items a list parameter accepts when its declaration does not say.
pub const DEFAULT_MAX_ITEMS: usize = 1000;

/// A scalar parameter type.
#[derive(Clone, Debug, PartialEq)]
pub enum ScalarType {
    Text {
        max_length: usize,
        pattern: Option<Pattern>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Decimal {
        precision: u32,
        scale: u32,
    },
    Date,
    Timestamp,
    Boolean,
    Enum(Vec<String>),
}

/// A compiled `pattern=` modifier, anchored to the whole value.
#[derive(Clone, Debug)]
pub struct Pattern(pub(super) Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamType {
    Scalar(ScalarType),
    List { item: ScalarType, max_items: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub optional: bool,
    pub description: String,
    /// The caller's attribute this parameter is bound to (`bound=supplier`): its value comes
    /// from the caller's access, never from a request (see [`crate::access`]).
    pub bound: Option<String>,
}

/// Why a request's parameters were refused; names the parameter and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// `params.<name>` (or `params` for the object as a whole).
    pub field: String,
    pub message: String,
}

impl ParamError {
    fn new(name: &str, message: impl Into<String>) -> Self {
        ParamError {
            field: format!("params.{name}"),
            message: format!("parameter '{name}' {}", message.into()),
        }
    }
}

impl Export {
    /// Checks `params` against the declarations: nothing missing, nothing extra, every value
    /// of its declared type. Returns the literals for each placeholder.
    pub fn bind(
        &self,
        params: &serde_json::Map<String, Value>,
    ) -> Result<BTreeMap<String, Vec<Literal>>, ParamError> {
        for key in params.keys() {
            if !self.params.iter().any(|p| &p.name == key) {
                let known: Vec<_> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(ParamError::new(
                    key,
                    format!(
                        "is not a parameter of export '{}' (it takes: {})",
                        self.name,
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut bound = BTreeMap::new();
        for param in &self.params {
            let literals = match params.get(&param.name) {
                None | Some(Value::Null) if param.optional => vec![Literal::Null],
                None | Some(Value::Null) => {
                    return Err(ParamError::new(&param.name, "is required"))
                }
                Some(value) => param.literals(value)?,
            };
            bound.insert(param.name.clone(), literals);
        }
        Ok(bound)
    }
}

impl Param {
    fn literals(&self, value: &Value) -> Result<Vec<Literal>, ParamError> {
        match &self.ty {
            ParamType::Scalar(ty) => Ok(vec![ty
                .literal(value)
                .map_err(|m| ParamError::new(&self.name, m))?]),
            ParamType::List { item, max_items } => {
                let Value::Array(items) = value else {
                    return Err(ParamError::new(
                        &self.name,
                        format!("must be a list of {item}"),
                    ));
                };
                if items.is_empty() {
                    return Err(ParamError::new(&self.name, "must not be an empty list"));
                }
                if items.len() > *max_items {
                    return Err(ParamError::new(
                        &self.name,
                        format!("has {} items; at most {max_items} allowed", items.len()),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        item.literal(v)
                            .map_err(|m| ParamError::new(&format!("{}[{i}]", self.name), m))
                    })
                    .collect()
            }
        }
    }

    /// The declaration as the API describes it, e.g. `list<integer>`.
    pub fn type_name(&self) -> String {
        match &self.ty {
            ParamType::Scalar(t) => t.to_string(),
            ParamType::List { item, .. } => format!("list<{item}>"),
        }
    }
}

impl ScalarType {
    /// Checks one JSON value against this type and turns it into a literal.
    fn literal(&self, value: &Value) -> Result<Literal, String> {
        match (self, value) {
            (
                ScalarType::Text {
                    max_length,
                    pattern,
                },
                Value::String(s),
            ) => {
                let chars = s.chars().count();
                if chars > *max_length {
                    return Err(format!(
                        "is {chars} characters long; at most {max_length} allowed"
                    ));
                }
                if let Some(Pattern(re)) = pattern {
                    if !re.is_match(s) {
                        let shown = re
                            .as_str()
                            .trim_start_matches("^(?:")
                            .trim_end_matches(")$");
                        return Err(format!("must match the pattern {shown}"));
                    }
                }
                Literal::text(s)
            }
            (ScalarType::Integer { min, max }, Value::Number(n)) => {
                let v = n.as_i64().ok_or("must be a whole number within 64 bits")?;
                if let Some(min) = min.filter(|m| v < *m) {
                    return Err(format!("must be at least {min}"));
                }
                if let Some(max) = max.filter(|m| v > *m) {
                    return Err(format!("must be at most {max}"));
                }
                Ok(Literal::Integer(v))
            }
            (ScalarType::Decimal { precision, scale }, Value::String(_) | Value::Number(_)) => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Literal::decimal(&text, *precision, *scale)
            }
            (ScalarType::Date, Value::String(s)) => Literal::date(s),
            (ScalarType::Timestamp, Value::String(s)) => Literal::timestamp(s),
            (ScalarType::Boolean, Value::Bool(b)) => Ok(Literal::Boolean(*b)),
            (ScalarType::Enum(values), Value::String(s)) => {
                if values.contains(s) {
                    Literal::text(s)
                } else {
                    Err(format!("must be one of: {}", values.join(", ")))
                }
            }
            (ty, _) => Err(format!("must be {}", ty.json_shape())),
        }
    }

    fn json_shape(&self) -> String {
        match self {
            ScalarType::Text { .. } => "a string".into(),
            ScalarType::Integer { .. } => "an integer".into(),
            ScalarType::Decimal { .. } => "a decimal number (number or string)".into(),
            ScalarType::Date => "a date string YYYY-MM-DD".into(),
            ScalarType::Timestamp => "a timestamp string YYYY-MM-DD HH:MM:SS[.ffffff]".into(),
            ScalarType::Boolean => "true or false".into(),
            ScalarType::Enum(values) => format!("one of: {}", values.join(", ")),
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarType::Text { .. } => f.write_str("text"),
            ScalarType::Integer { .. } => f.write_str("integer"),
            ScalarType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ScalarType::Date => f.write_str("date"),
            ScalarType::Timestamp => f.write_str("timestamp"),
            ScalarType::Boolean => f.write_str("boolean"),
            ScalarType::Enum(v) => write!(f, "enum({})", v.join("|")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{params, PRODUCT};
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_parameter_and_the_rule() {
        let export = Export::parse(PRODUCT).unwrap();
        let e = export.render(&params(json!({}))).unwrap_err();
        assert_eq!(e.field, "params.sku");
        assert!(e.message.contains("required"));
        let e = export.render(&params(json!({"sku": 12}))).unwrap_err();
        assert!(e.message.contains("must be a string"), "{e}");
        let e = export
            .render(&params(json!({"sku": "x".repeat(21)})))
            .unwrap_err();
        assert!(e.message.contains("at most 20"), "{e}");
        let e = export
            .render(&params(json!({"sku": "a", "extra": 1})))
            .unwrap_err();
        assert_eq!(e.field, "params.extra");
        let e = export
            .render(&params(json!({"sku": "a", "since": "2024-02-30"})))
            .unwrap_err();
        assert_eq!(e.field, "params.since");
    }

    #[test]
    fn lists_enums_patterns_and_numbers() {
        let export = Export::parse(
            "-- export: t
-- param: ids list<integer> max_items=3 min=1
-- param: seg enum(A|B)
-- param: code text pattern=[A-Z]{2}\\d
-- param: price decimal(6,2)
-- param: flag boolean
SELECT 1 FROM t WHERE id IN (:ids) AND seg = :seg AND code = :code AND p < :price AND f = :flag",
        )
        .unwrap();
        let ok = json!({"ids": [1, 2], "seg": "A", "code": "AB1", "price": "12.5", "flag": true});
        let sql = export.render(&params(ok.clone())).unwrap();
        assert!(sql.contains("id IN ( 1, 2 )"), "{sql}");
        assert!(sql.contains("p < 12.5 AND f = TRUE"), "{sql}");
        for (key, bad, field) in [
            ("ids", json!([]), "params.ids"),
            ("ids", json!([1, 2, 3, 4]), "params.ids"),
            ("ids", json!([1, 0]), "params.ids[1]"),
            ("ids", json!(["1"]), "params.ids[0]"),
            ("seg", json!("C"), "params.seg"),
            ("code", json!("ab1"), "params.code"),
            ("price", json!("12345.1"), "params.price"),
            ("price", json!("1.234"), "params.price"),
            ("price", json!("1e3"), "params.price"),
            ("flag", json!("true"), "params.flag"),
        ] {
            let mut p = params(ok.clone());
            p.insert(key.into(), bad.clone());
            let e = export.render(&p).unwrap_err();
            assert_eq!(e.field, field, "{key}={bad}: {e}");
        }
    }
}
