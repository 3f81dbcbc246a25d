//! What the routes read, and how: strictly. A body is read as its route's type with unknown
//! fields refused and every error naming the field at fault by its path (`notify[2]`), so a
//! typo never falls back to a default and a caller can see which value to mend.

use crate::delivery::{Delivery, MAX_DELIVER};
use crate::strict_json::{self, StrictJsonError};
use crate::vocabulary::{Archive, Compression, Format};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use utoipa::ToSchema;

/// At most this many notification addresses per request.
pub const MAX_NOTIFY: usize = 10;

/// `POST /exports`: what to export, how, and who hears when it is ready.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "dataset": "customers",
    "params": {"ids": [1, 2, 3], "segment": "BUILDING"},
    "format": "csv",
    "compression": "gzip",
    "archive": "zip",
    "notify": ["analyst@example.com"],
    "deliver": [{"webhook": "https://partner.example/hooks/exports"}, {"s3": "s3://partner-feed/inbound/"}]
}))]
pub struct ExportRequest {
    /// A dataset of the catalogue (`GET /datasets`).
    pub dataset: String,
    /// The dataset's parameters, each as its type says (`GET /datasets`).
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Object>)]
    pub params: Map<String, Value>,
    /// `csv` unless given.
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Format>)]
    pub format: Format,
    /// `none` unless given; Parquet takes none (it compresses itself).
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Compression>)]
    pub compression: Compression,
    /// `zip` unless given; `none` hands out the parts, a link each.
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Archive>)]
    pub archive: Archive,
    /// Addresses to email the link to, once the export is ready.
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<String>>)]
    pub notify: Vec<String>,
    /// Where else the finished export goes: an email address, a webhook, a bucket.
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<Delivery>>)]
    pub deliver: Vec<Delivery>,
}

impl ExportRequest {
    pub fn new(dataset: impl Into<String>, params: Map<String, Value>) -> ExportRequest {
        ExportRequest {
            dataset: dataset.into(),
            params,
            ..ExportRequest::default()
        }
    }

    /// Reads a body already parsed strictly: its shape, then the rules its fields keep
    /// together. The catalogue checks the dataset and its parameters after this.
    pub fn read(body: Value) -> Result<ExportRequest, FieldError> {
        let request: ExportRequest = from_value(body)?;
        request.check()?;
        Ok(request)
    }

    /// The rules no single field's type can say.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.dataset.is_empty() {
            return Err(FieldError::new("dataset", "'dataset' must not be empty"));
        }
        if self.format == Format::Parquet && self.compression != Compression::None {
            return Err(FieldError::new(
                "compression",
                "parquet output is compressed internally; 'compression' must be none",
            ));
        }
        if self.notify.len() > MAX_NOTIFY {
            return Err(FieldError::new(
                "notify",
                format!("at most {MAX_NOTIFY} addresses"),
            ));
        }
        if let Some(i) = self.notify.iter().position(|a| !is_email_address(a)) {
            let field = format!("notify[{i}]");
            return Err(FieldError::new(
                &field,
                format!("'{field}' is not a valid email address"),
            ));
        }
        if self.deliver.len() > MAX_DELIVER {
            return Err(FieldError::new(
                "deliver",
                format!("at most {MAX_DELIVER} deliveries"),
            ));
        }
        for (i, delivery) in self.deliver.iter().enumerate() {
            delivery.check(&format!("deliver[{i}]"))?;
        }
        Ok(())
    }
}

/// `POST /datasets/{name}/exports`: an export of the dataset the path names (so an
/// `execute-api` policy can grant single datasets); the body of `POST /exports` without
/// `dataset`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"params": {"ship_from": "1996-01-01", "ship_to": "1996-12-31"}, "format": "csv"}))]
pub struct DatasetExportRequest {
    /// The dataset's parameters, each as its type says (`GET /datasets/{name}`); never a
    /// bound one.
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Object>)]
    pub params: Map<String, Value>,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Format>)]
    pub format: Format,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Compression>)]
    pub compression: Compression,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Archive>)]
    pub archive: Archive,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<String>>)]
    pub notify: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    #[schema(value_type = Option<Vec<Delivery>>)]
    pub deliver: Vec<Delivery>,
}

impl DatasetExportRequest {
    /// The request `POST /exports` would take for the same export of `dataset`.
    pub fn of(self, dataset: &str) -> ExportRequest {
        ExportRequest {
            dataset: dataset.to_owned(),
            params: self.params,
            format: self.format,
            compression: self.compression,
            archive: self.archive,
            notify: self.notify,
            deliver: self.deliver,
        }
    }
}

/// `POST /product`, as the original sample took it: mapped onto `product_detail`'s
/// parameters, whose types check the values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "FLOWER12"}))]
pub struct ProductRequest {
    /// The product's stock-keeping unit.
    #[schema(value_type = String)]
    pub sku: Option<Value>,
    /// Only if the product has exactly this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub productname: Option<Value>,
    /// Only if the product was created on this day (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub createdate: Option<Value>,
}

/// A JSON `null` reads as the field's default, as leaving the field out does.
pub(crate) fn null_is_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A deliberately plain check: one `@`, no spaces or angle brackets, a dotted domain.
pub fn is_email_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '"' | ',' | ';' | '(' | ')' | '\\' | '[' | ']'
                )
        })
        && !domain.contains('@')
}

/// Why a body could not be read as its route's type: the field at fault, by its path from the
/// top of the body (empty for the body itself), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why a body was refused before its fields were read.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON.
    Syntax(serde_json::Error),
    /// Well-formed JSON that is not what the route reads.
    Field(FieldError),
}

/// A body's bytes as `T`: strictly parsed (an object naming a key twice is refused, by the
/// key's path), then read field by field.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let value = strict_json::parse(bytes).map_err(|e| match e {
        StrictJsonError::Syntax(e) => BodyError::Syntax(e),
        StrictJsonError::Duplicate(path) => BodyError::Field(FieldError::new(
            &path,
            format!("'{path}' is named twice in the body; name each field once"),
        )),
    })?;
    from_value(value).map_err(BodyError::Field)
}

/// A parsed body as `T`, any error naming its field by path.
pub fn from_value<T: DeserializeOwned>(body: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let mut field = path_text(e.path());
        let reason = e.into_inner().to_string();
        // serde reports a missing field at the object that holds it (an unknown one at its
        // own path): name the field.
        if let Some(name) = missing_field(&reason) {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
        if reason.starts_with("missing field") || reason.starts_with("unknown field") {
            return FieldError::new(&field, reason);
        }
        let message = if field.is_empty() {
            format!("the body {reason}")
        } else {
            format!("'{field}': {reason}")
        };
        FieldError::new(&field, message)
    })
}

/// `params.ids[1]`: names joined by dots, list positions in brackets.
fn path_text(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut text = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    text
}

/// The field serde's "missing field `x`" names.
fn missing_field(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_export_request_is_read_field_by_field() {
        let ok = ExportRequest::read(json!({"dataset": "d", "params": {"a": 1}})).unwrap();
        assert_eq!(
            (ok.format, ok.compression, ok.archive),
            (Format::Csv, Compression::None, Archive::Zip)
        );
        let nulls = json!({"dataset": "d", "params": null, "format": null, "notify": null});
        assert_eq!(
            ExportRequest::read(nulls).unwrap(),
            ExportRequest::new("d", Map::new())
        );
        for (body, field) in [
            (json!([]), ""),
            (json!({}), "dataset"),
            (json!({"dataset": ""}), "dataset"),
            (json!({"dataset": 3}), "dataset"),
            (json!({"dataset": "d", "params": []}), "params"),
            (json!({"dataset": "d", "format": "xml"}), "format"),
            (json!({"dataset": "d", "compression": "lz4"}), "compression"),
            (json!({"dataset": "d", "archive": "rar"}), "archive"),
            (
                json!({"dataset": "d", "format": "parquet", "compression": "gzip"}),
                "compression",
            ),
            (json!({"dataset": "d", "notify": ["a@b.c", 7]}), "notify[1]"),
            (
                json!({"dataset": "d", "notify": ["a@b.c", "not-an-address"]}),
                "notify[1]",
            ),
            (json!({"dataset": "d", "notify": "a@b.c"}), "notify"),
            (
                json!({"dataset": "d", "deliver": [{"email": "a@b.co"}, {"webhook": "ftp://x"}]}),
                "deliver[1].webhook",
            ),
            (
                json!({"dataset": "d", "deliver": [{"fax": "123"}]}),
                "deliver[0]",
            ),
            (
                json!({"dataset": "d", "deliver": [{"email": "a@b.co", "s3": "s3://abc/"}]}),
                "deliver[0]",
            ),
            (json!({"dataset": "d", "colour": "red"}), "colour"),
        ] {
            let e = ExportRequest::read(body.clone()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
            assert!(!e.message.is_empty(), "{body}");
        }
    }

    #[test]
    fn a_key_named_twice_or_bad_json_is_refused_before_the_fields() {
        match from_slice::<ExportRequest>(br#"{"dataset": "a", "params": {"x": 1, "x": 2}}"#) {
            Err(BodyError::Field(e)) => assert_eq!(e.field, "params.x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_slice::<ExportRequest>(b"{\"dataset\":"),
            Err(BodyError::Syntax(_))
        ));
    }

    #[test]
    fn the_original_samples_body_refuses_other_fields() {
        let e = from_value::<ProductRequest>(json!({"sku": "A", "colour": "red"})).unwrap_err();
        assert_eq!(e.field, "colour");
    }

    #[test]
    fn email_addresses() {
        assert!(is_email_address("ops@example.com"));
        for bad in [
            "", "a", "a@b", "@b.c", "a@.c", "a b@c.d", "a@b.c>", "a@b@c.d",
        ] {
            assert!(!is_email_address(bad), "{bad}");
        }
    }
}
