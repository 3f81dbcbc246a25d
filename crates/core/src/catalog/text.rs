//! Parameter values written as text (a query string, the CLI's `-p name=value`, a form) made
//! into the JSON the API reads, in one place: by the parameter's type as the API describes it
//! (`integer`, `boolean`, `list<integer>`, …). Text that is not of its type stays text, so the
//! export's own check refuses it by name, as it refuses a JSON body's.

use super::{Export, ParamType};
use crate::error::ApiError;
use http::StatusCode;
use serde_json::{Map, Value};
use std::borrow::Cow;

impl Export {
    /// Parameters given as `name=value` pairs (a query string, a form's `params.<name>`
    /// fields), as the JSON an export takes, by each parameter's declared type: a list from
    /// comma-separated values (`ids=1,2,3`) or from the name repeated (`ids=1&ids=2`, each
    /// occurrence one item, commas and all). A name that is not a parameter stays text, for
    /// the export's own check to name; a parameter that takes one value given twice is
    /// refused, never read as one of its values.
    pub fn params_from_text<'a>(
        &self,
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut given: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in pairs {
            match given.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value.into_owned()),
                None => given.push((name.into_owned(), vec![value.into_owned()])),
            }
        }
        let mut params = Map::new();
        for (name, values) in given {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let value = match self.params.iter().find(|p| p.name == name) {
                None => Value::String(values.join(",")),
                Some(param) => {
                    if values.len() > 1 && matches!(param.ty, ParamType::Scalar(_)) {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_parameter",
                            format!(
                                "parameter '{name}' is given more than once; it takes one value"
                            ),
                        )
                        .with_field(format!("params.{name}")));
                    }
                    value_from_text(&param.type_name(), &values)
                }
            };
            params.insert(name, value);
        }
        Ok(params)
    }
}

/// The JSON value of a parameter of type `type_name` given as `values`: one value of a list
/// type is split at commas, several are the list's items.
pub fn value_from_text(type_name: &str, values: &[&str]) -> Value {
    match type_name
        .strip_prefix("list<")
        .and_then(|t| t.strip_suffix('>'))
    {
        Some(item) => {
            let items: Vec<&str> = match values {
                [one] => one.split(',').map(str::trim).collect(),
                many => many.to_vec(),
            };
            Value::Array(items.iter().map(|v| scalar(item, v)).collect())
        }
        None => scalar(type_name, values.first().copied().unwrap_or_default()),
    }
}

/// A value held as a list of strings (a caller's attribute): its one item for a scalar type
/// (None when there are several), every item for a list type, each split no further.
pub fn value_from_items(type_name: &str, items: &[String]) -> Option<Value> {
    match type_name
        .strip_prefix("list<")
        .and_then(|t| t.strip_suffix('>'))
    {
        Some(item) => Some(Value::Array(
            items.iter().map(|v| scalar(item, v)).collect(),
        )),
        None => match items {
            [one] => Some(scalar(type_name, one)),
            _ => None,
        },
    }
}

/// A timestamp as a form's date-time field writes it (`2026-01-02T10:00`, RFC 3339's `T`,
/// seconds left out) in the API's form, `2026-01-02 10:00:00`; any other text unchanged.
fn timestamp(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let date_and_minutes = bytes.len() >= 16
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16);
    if !date_and_minutes {
        return Cow::Borrowed(text);
    }
    let spaced = format!("{} {}", &text[..10], &text[11..]);
    Cow::Owned(if spaced.len() == 16 {
        spaced + ":00"
    } else {
        spaced
    })
}

fn scalar(type_name: &str, text: &str) -> Value {
    match type_name {
        "integer" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        "timestamp" => Value::String(timestamp(text).into_owned()),
        "boolean" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_owned()),
        },
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_becomes_the_type_it_is_declared_as_or_stays_text() {
        assert_eq!(value_from_text("integer", &["42"]), json!(42));
        assert_eq!(value_from_text("integer", &["forty"]), json!("forty"));
        assert_eq!(value_from_text("boolean", &["true"]), json!(true));
        assert_eq!(value_from_text("boolean", &["yes"]), json!("yes"));
        assert_eq!(
            value_from_text("date", &["2024-02-29"]),
            json!("2024-02-29")
        );
        assert_eq!(value_from_text("decimal(10,2)", &["1.50"]), json!("1.50"));
        assert_eq!(
            value_from_text("list<integer>", &["1, 2,3"]),
            json!([1, 2, 3])
        );
        assert_eq!(
            value_from_text("list<integer>", &["1", "x"]),
            json!([1, "x"])
        );
        assert_eq!(value_from_text("list<text>", &["a,b"]), json!(["a", "b"]));
        for (form, api) in [
            ("2026-01-02T10:00", "2026-01-02 10:00:00"),
            ("2026-01-02T10:00:05", "2026-01-02 10:00:05"),
            ("2026-01-02T10:00:05.25", "2026-01-02 10:00:05.25"),
            ("2026-01-02 10:00:05", "2026-01-02 10:00:05"),
            ("2026-01-02T1", "2026-01-02T1"),
            ("noon", "noon"),
        ] {
            assert_eq!(value_from_text("timestamp", &[form]), json!(api), "{form}");
        }
    }

    fn export() -> Export {
        Export::parse(
            "-- export: t
-- lookup:
-- param: ids list<integer>
-- param: names list<text> optional
-- param: flag boolean optional
-- param: day date optional
SELECT 1 FROM t WHERE id IN (:ids) AND (:names IS NULL OR n IN (:names))
  AND (:flag IS NULL OR f = :flag) AND (:day IS NULL OR d = :day)",
        )
        .unwrap()
    }

    fn from_query(query: &str) -> Result<Map<String, Value>, ApiError> {
        export().params_from_text(form_urlencoded::parse(query.as_bytes()))
    }

    #[test]
    fn query_strings_become_the_values_an_export_takes() {
        let params = from_query("ids=1,2,3&flag=true&day=2024-02-29&names=a%2Cb&names=c").unwrap();
        assert_eq!(
            Value::Object(params.clone()),
            json!({"ids": [1, 2, 3], "flag": true, "day": "2024-02-29", "names": ["a,b", "c"]})
        );
        export().bind(&params).unwrap();
        let repeated = from_query("ids=4&ids=5").unwrap();
        assert_eq!(repeated["ids"], json!([4, 5]));
    }

    #[test]
    fn bad_values_get_the_errors_an_export_gets() {
        for (query, field) in [
            ("ids=1,x", "params.ids[1]"),
            ("ids=", "params.ids[0]"),
            ("ids=1&flag=yes", "params.flag"),
            ("ids=1&day=2024-02-30", "params.day"),
            ("ids=1&colour=red", "params.colour"),
            ("flag=true", "params.ids"),
        ] {
            let params = from_query(query).unwrap();
            let e = export().bind(&params).unwrap_err();
            assert_eq!(e.field, field, "{query}: {e}");
        }
        let twice = from_query("ids=1&flag=true&flag=false").unwrap_err();
        assert_eq!(twice.field.as_deref(), Some("params.flag"));
    }
}
