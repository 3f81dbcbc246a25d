//! Parameter values written as text (a query string, the CLI's `-p name=value`, a form) made
//! into the JSON the API reads, in one place: by the parameter's type as the API describes it
//! (`integer`, `boolean`, `list<integer>`, …). Text that is not of its type stays text, so the
//! export's own check refuses it by name, as it refuses a JSON body's.

use serde_json::Value;

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

fn scalar(type_name: &str, text: &str) -> Value {
    match type_name {
        "integer" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
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
    }
}
