//! The export catalogue: one `.sql` file per export, with a header declaring typed parameters
//! and a SELECT body that uses `:name` placeholders.
//!
//! ```sql
//! -- export: product_detail
//! -- description: One product by its SKU.
//! -- param: sku text max_length=20 -- the product's stock-keeping unit
//! -- param: ids list<integer> max_items=100 optional
//! SELECT * FROM rsdataapi.product_detail WHERE sku = :sku
//! ```
//!
//! Modifiers are `key=value` words: `max_length`, `pattern` (a regex without spaces; use `\s`),
//! `min`, `max` (integers), `max_items` (lists), `optional`. Types: `text`, `integer`,
//! `decimal(p,s)`, `date`, `timestamp`, `boolean`, `enum(a|b|c)`, and `list<T>` of any of them.
//! Values are checked against their type, then turned into SQL literals by [`crate::sql`].

use crate::sql::{self, Literal};
use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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
pub struct Pattern(Regex);

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
}

/// One export: a name, what it is, its parameters and its SELECT template.
#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub description: String,
    pub params: Vec<Param>,
    pub template: String,
}

/// All exports, by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    exports: BTreeMap<String, Export>,
}

/// Why a catalogue file was refused at load time.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogError {
    pub file: String,
    pub message: String,
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

impl Catalog {
    /// Loads every `*.sql` file in `dir`, refusing the whole catalogue if any file is invalid,
    /// so a broken export is found at start-up rather than by a caller.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let err = |message: String| CatalogError {
            file: dir.display().to_string(),
            message,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("cannot read the catalogue directory: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| CatalogError {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((path.display().to_string(), text));
        }
        Catalog::from_sources(sources.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// Builds a catalogue from `(file name, text)` pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut exports = BTreeMap::new();
        for (file, text) in sources {
            let export = Export::parse(text).map_err(|message| CatalogError {
                file: file.to_owned(),
                message,
            })?;
            if exports.contains_key(&export.name) {
                return Err(CatalogError {
                    file: file.to_owned(),
                    message: format!("export '{}' is declared twice", export.name),
                });
            }
            exports.insert(export.name.clone(), export);
        }
        Ok(Catalog { exports })
    }

    pub fn get(&self, name: &str) -> Option<&Export> {
        self.exports.get(name)
    }

    pub fn exports(&self) -> impl Iterator<Item = &Export> {
        self.exports.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.exports.keys().map(String::as_str).collect()
    }
}

impl Export {
    /// Parses one catalogue file.
    pub fn parse(text: &str) -> Result<Export, String> {
        let mut name = None;
        let mut description = String::new();
        let mut params: Vec<Param> = Vec::new();
        let mut body = Vec::new();
        let mut in_header = true;
        for line in text.lines() {
            let trimmed = line.trim();
            if in_header {
                if let Some(rest) = trimmed.strip_prefix("--") {
                    let rest = rest.trim();
                    if let Some(v) = rest.strip_prefix("export:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = rest.strip_prefix("description:") {
                        if !description.is_empty() {
                            description.push(' ');
                        }
                        description.push_str(v.trim());
                    } else if let Some(v) = rest.strip_prefix("param:") {
                        let param = Param::parse(v.trim())?;
                        if params.iter().any(|p| p.name == param.name) {
                            return Err(format!("parameter '{}' is declared twice", param.name));
                        }
                        params.push(param);
                    }
                    continue;
                }
                if trimmed.is_empty() {
                    continue;
                }
                in_header = false;
            }
            body.push(line);
        }
        let name = name.ok_or("missing '-- export: <name>' header")?;
        if !valid_identifier(&name) {
            return Err(format!(
                "export name '{name}' must be lower-case letters, digits and _"
            ));
        }
        let template = body.join("\n").trim().trim_end_matches(';').to_owned();
        if template.is_empty() {
            return Err("no SELECT body after the header".into());
        }
        let export = Export {
            name,
            description,
            params,
            template,
        };
        export.check_template()?;
        Ok(export)
    }

    /// The template must be one query, and its placeholders exactly the declared parameters.
    fn check_template(&self) -> Result<(), String> {
        let used = placeholders(&self.template)?;
        for name in &used {
            if !self.params.iter().any(|p| &p.name == name) {
                return Err(format!(
                    "placeholder :{name} has no '-- param: {name} …' declaration"
                ));
            }
        }
        for param in &self.params {
            if !used.contains(&param.name) {
                return Err(format!(
                    "parameter '{}' is declared but never used",
                    param.name
                ));
            }
        }
        // Render with every parameter NULL: the result must be a single query.
        let nulls = self
            .params
            .iter()
            .map(|p| (p.name.clone(), vec![Literal::Null]))
            .collect();
        let sql = substitute(&self.template, &nulls)?;
        sql::parse_query(&sql).map_err(|e| format!("the SELECT body does not parse: {e}"))?;
        Ok(())
    }

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

    /// Validates `params` and renders the SELECT with every placeholder replaced by its literal.
    pub fn render(&self, params: &serde_json::Map<String, Value>) -> Result<String, ParamError> {
        let bound = self.bind(params)?;
        // The template was checked at load time, so substitution cannot fail here.
        substitute(&self.template, &bound).map_err(|message| ParamError {
            field: "params".into(),
            message,
        })
    }
}

impl Param {
    /// Parses `name type [modifier …] [-- description]`.
    fn parse(spec: &str) -> Result<Param, String> {
        let (spec, description) = match spec.split_once(" -- ") {
            Some((s, d)) => (s, d.trim().to_owned()),
            None => (spec, String::new()),
        };
        let mut words = spec.split_whitespace();
        let name = words
            .next()
            .ok_or("empty parameter declaration")?
            .to_owned();
        if !valid_identifier(&name) {
            return Err(format!(
                "parameter name '{name}' must be lower-case letters, digits and _"
            ));
        }
        let ty_word = words
            .next()
            .ok_or_else(|| format!("parameter '{name}' has no type"))?;
        let mut modifiers = BTreeMap::new();
        let mut optional = false;
        for word in words {
            if word == "optional" {
                optional = true;
            } else if let Some((k, v)) = word.split_once('=') {
                modifiers.insert(k, v);
            } else {
                return Err(format!("parameter '{name}': unknown modifier '{word}'"));
            }
        }
        let ctx = |m: String| format!("parameter '{name}': {m}");
        let ty = if let Some(inner) = ty_word
            .strip_prefix("list<")
            .and_then(|s| s.strip_suffix('>'))
        {
            let max_items = match modifiers.remove("max_items") {
                Some(v) => v
                    .parse()
                    .map_err(|_| ctx(format!("max_items '{v}' is not a number")))?,
                None => DEFAULT_MAX_ITEMS,
            };
            ParamType::List {
                item: ScalarType::parse(inner, &mut modifiers).map_err(ctx)?,
                max_items,
            }
        } else {
            ParamType::Scalar(ScalarType::parse(ty_word, &mut modifiers).map_err(ctx)?)
        };
        if let Some(k) = modifiers.keys().next() {
            return Err(ctx(format!("modifier '{k}' does not apply to its type")));
        }
        Ok(Param {
            name,
            ty,
            optional,
            description,
        })
    }

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
    fn parse(word: &str, modifiers: &mut BTreeMap<&str, &str>) -> Result<ScalarType, String> {
        let int_modifier =
            |m: &mut BTreeMap<&str, &str>, key: &str| -> Result<Option<i64>, String> {
                m.remove(key)
                    .map(|v| {
                        v.parse()
                            .map_err(|_| format!("{key} '{v}' is not an integer"))
                    })
                    .transpose()
            };
        Ok(match word {
            "text" => {
                let max_length = match modifiers.remove("max_length") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| format!("max_length '{v}' is not a number"))?,
                    None => 256,
                };
                if max_length == 0 || max_length > MAX_TEXT_LENGTH {
                    return Err(format!("max_length must be 1..={MAX_TEXT_LENGTH}"));
                }
                let pattern = modifiers
                    .remove("pattern")
                    .map(|p| {
                        // The pattern must stand alone, so that wrapping it in the anchors
                        // below cannot be escaped by a stray `)` (as `a)|(.*` would).
                        Regex::new(p)
                            .and_then(|_| Regex::new(&format!("^(?:{p})$")))
                            .map(Pattern)
                            .map_err(|e| format!("pattern does not compile: {e}"))
                    })
                    .transpose()?;
                ScalarType::Text {
                    max_length,
                    pattern,
                }
            }
            "integer" => ScalarType::Integer {
                min: int_modifier(modifiers, "min")?,
                max: int_modifier(modifiers, "max")?,
            },
            "date" => ScalarType::Date,
            "timestamp" => ScalarType::Timestamp,
            "boolean" => ScalarType::Boolean,
            _ => {
                if let Some(args) = word
                    .strip_prefix("decimal(")
                    .and_then(|s| s.strip_suffix(')'))
                {
                    let (p, s) = args
                        .split_once(',')
                        .ok_or("decimal needs (precision,scale)")?;
                    let precision: u32 = p.trim().parse().map_err(|_| "bad decimal precision")?;
                    let scale: u32 = s.trim().parse().map_err(|_| "bad decimal scale")?;
                    if precision == 0 || precision > 38 || scale > precision {
                        return Err("decimal precision must be 1..=38 and scale ≤ precision".into());
                    }
                    ScalarType::Decimal { precision, scale }
                } else if let Some(args) =
                    word.strip_prefix("enum(").and_then(|s| s.strip_suffix(')'))
                {
                    let values: Vec<String> = args.split('|').map(str::to_owned).collect();
                    if values
                        .iter()
                        .any(|v| v.is_empty() || v.contains(['\'', '\\']))
                    {
                        return Err("enum values must be non-empty and free of quotes".into());
                    }
                    ScalarType::Enum(values)
                } else {
                    return Err(format!("unknown type '{word}'"));
                }
            }
        })
    }

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

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn tokenize(template: &str) -> Result<Vec<Token>, String> {
    // No unescaping: tokens print back exactly as written.
    Tokenizer::new(&RedshiftSqlDialect {}, template)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| format!("the SELECT body does not tokenize: {e}"))
}

/// A placeholder is a `:` immediately followed by a word (`::` casts are their own token).
fn placeholder_at(tokens: &[Token], i: usize) -> Option<&str> {
    match (tokens.get(i), tokens.get(i + 1)) {
        (Some(Token::Colon), Some(Token::Word(w))) if w.quote_style.is_none() => {
            Some(w.value.as_str())
        }
        _ => None,
    }
}

/// The placeholder names a template uses, in order of first use.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let tokens = tokenize(template)?;
    let mut names: Vec<String> = Vec::new();
    for i in 0..tokens.len() {
        if let Some(name) = placeholder_at(&tokens, i) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Replaces each `:name` token with its literals (comma-separated for lists). Works on tokens,
/// never on text, so a `:name` inside a string literal or comment of the template is left alone.
fn substitute(template: &str, bound: &BTreeMap<String, Vec<Literal>>) -> Result<String, String> {
    let tokens = tokenize(template)?;
    let mut out = String::with_capacity(template.len() + 64);
    let mut i = 0;
    while i < tokens.len() {
        if let Some(name) = placeholder_at(&tokens, i) {
            let literals = bound
                .get(name)
                .ok_or_else(|| format!("no value for placeholder :{name}"))?;
            // Spaces around the literal: it can never fuse with a neighbouring token of the
            // template (as `E` before a quote would make an escape string).
            if !out.is_empty() && !out.ends_with(char::is_whitespace) {
                out.push(' ');
            }
            for (n, literal) in literals.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                out.push_str(&literal.to_sql());
            }
            if tokens
                .get(i + 2)
                .is_some_and(|t| !matches!(t, Token::Whitespace(_)))
            {
                out.push(' ');
            }
            i += 2;
        } else {
            out.push_str(&tokens[i].to_string());
            i += 1;
        }
    }
    Ok(out)
}

/// How the catalogue is described to callers (`GET /datasets`).
#[derive(Serialize)]
pub struct ExportDescription<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub params: Vec<ParamDescription<'a>>,
}

#[derive(Serialize)]
pub struct ParamDescription<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub type_name: String,
    pub required: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub rules: serde_json::Map<String, Value>,
}

impl Export {
    pub fn describe(&self) -> ExportDescription<'_> {
        ExportDescription {
            name: &self.name,
            description: &self.description,
            params: self
                .params
                .iter()
                .map(|p| {
                    let mut rules = serde_json::Map::new();
                    let scalar = match &p.ty {
                        ParamType::Scalar(s) => s,
                        ParamType::List { item, max_items } => {
                            rules.insert("max_items".into(), (*max_items).into());
                            item
                        }
                    };
                    match scalar {
                        ScalarType::Text {
                            max_length,
                            pattern,
                        } => {
                            rules.insert("max_length".into(), (*max_length).into());
                            if let Some(Pattern(re)) = pattern {
                                rules.insert("pattern".into(), re.as_str().into());
                            }
                        }
                        ScalarType::Integer { min, max } => {
                            if let Some(min) = min {
                                rules.insert("min".into(), (*min).into());
                            }
                            if let Some(max) = max {
                                rules.insert("max".into(), (*max).into());
                            }
                        }
                        ScalarType::Enum(values) => {
                            rules.insert("values".into(), values.clone().into());
                        }
                        _ => {}
                    }
                    ParamDescription {
                        name: &p.name,
                        type_name: p.type_name(),
                        required: !p.optional,
                        description: &p.description,
                        rules,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PRODUCT: &str = "-- export: product_detail
-- description: One product by SKU.
-- param: sku text max_length=20 -- the SKU
-- param: since date optional
SELECT sku, product_name FROM rsdataapi.product_detail
WHERE sku = :sku AND (:since IS NULL OR created_on >= :since) AND note <> ':sku'::varchar;
";

    fn params(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_header_and_renders_literals() {
        let export = Export::parse(PRODUCT).unwrap();
        assert_eq!(export.name, "product_detail");
        assert_eq!(export.params.len(), 2);
        let sql = export.render(&params(json!({"sku": "O'Neil\\x"}))).unwrap();
        assert!(sql.contains("sku = 'O''Neil\\\\x' AND"), "{sql}");
        assert!(sql.contains("( NULL IS NULL OR"), "{sql}");
        // The template's own string literal is not a placeholder.
        assert!(sql.contains("note <> ':sku'::varchar"), "{sql}");
    }

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

    #[test]
    fn refuses_broken_catalogue_files() {
        for (text, needle) in [
            ("SELECT 1", "missing '-- export"),
            ("-- export: a\nSELECT :x", "no '-- param: x"),
            ("-- export: a\n-- param: x integer\nSELECT 1", "never used"),
            ("-- export: a\n-- param: x blob\nSELECT :x", "unknown type"),
            ("-- export: a\nSELECT FROM WHERE", "does not parse"),
            // A pattern that would escape its anchors once wrapped.
            (
                "-- export: a\n-- param: x text pattern=a)|(.*\nSELECT :x",
                "pattern does not compile",
            ),
            ("-- export: a\nSELECT 1; DROP TABLE t", "does not parse"),
            (
                "-- export: a\n-- param: x text colour=red\nSELECT :x",
                "does not apply",
            ),
        ] {
            let e = Export::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
