//! JSON bodies parsed strictly: an object that names a key twice is refused, naming the key by
//! its path (`params.sku`). serde_json keeps the last of two equal keys, so a body could say
//! one thing to a reader that takes the first and another to this API; RFC 8259 leaves
//! duplicate names' meaning open, and an API that binds values to callers must not guess.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum StrictJsonError {
    /// Not JSON at all.
    Syntax(serde_json::Error),
    /// An object names this key (by its path from the top) more than once.
    Duplicate(String),
}

/// Parses `bytes` as JSON, refusing any object with a duplicate key.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut reader)
    .and_then(|value| reader.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictJsonError::Duplicate(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// One value of the document, at `path`.
struct Node<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'a> Node<'a> {
    fn child(&self, step: String) -> Node<'a> {
        Node {
            path: step,
            duplicate: self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(self.child(format!("{}[{}]", self.path, items.len())))?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path.clone());
                return Err(de::Error::custom(format!("'{path}' is named twice")));
            }
            let value = map.next_value_seed(self.child(path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_twice_is_refused_by_its_path() {
        for (body, path) in [
            (r#"{"dataset":"a","dataset":"b"}"#, "dataset"),
            (r#"{"params":{"sku":"X","sku":"Y"}}"#, "params.sku"),
            (r#"{"params":{"ids":[{"k":1,"k":2}]}}"#, "params.ids[0].k"),
        ] {
            match parse(body.as_bytes()) {
                Err(StrictJsonError::Duplicate(p)) => assert_eq!(p, path, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn anything_else_reads_as_serde_json_reads_it() {
        let body =
            r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":{"a":1},"d":18446744073709551615}"#;
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(body).unwrap()
        );
        assert!(matches!(
            parse(b"{\"a\":1} trailing"),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(matches!(parse(b"{\"a\":"), Err(StrictJsonError::Syntax(_))));
    }
}
