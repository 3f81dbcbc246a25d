//! The SELECT template: its `:name` placeholders found, checked against the declarations, and
//! replaced by the values' literals. Both work on the Redshift dialect's tokens, never on text,
//! so a `:name` inside a string literal or comment of the template is left alone.

use super::params::ParamError;
use super::Export;
use crate::sql::{self, Literal};
use serde_json::Value;
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::BTreeMap;

impl Export {
    /// The template must be one query, and its placeholders exactly the declared parameters.
    /// Answers whether the query has a LIMIT or FETCH of its own.
    pub(super) fn check_template(&self) -> Result<bool, String> {
        let used = self.placeholders();
        for name in &used {
            if !self.params.iter().any(|p| &p.name == name) {
                return Err(format!(
                    "placeholder :{name} has no '-- param: {name} …' declaration"
                ));
            }
        }
        for param in &self.params {
            if !used.contains(&param.name.as_str()) {
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
        let sql = self.substitute(&nulls)?;
        let query =
            sql::parse_query(&sql).map_err(|e| format!("the SELECT body does not parse: {e}"))?;
        // `SELECT TOP n` is Redshift's LIMIT ("TOP" in "SELECT list").
        let top =
            matches!(query.body.as_ref(), sqlparser::ast::SetExpr::Select(s) if s.top.is_some());
        Ok(query.limit_clause.is_some() || query.fetch.is_some() || top)
    }

    /// Validates `params` and renders the SELECT with every placeholder replaced by its literal.
    pub fn render(&self, params: &serde_json::Map<String, Value>) -> Result<String, ParamError> {
        let bound = self.bind(params)?;
        // The template was checked at load time, so substitution cannot fail here.
        let select = self.substitute(&bound).map_err(|message| ParamError {
            field: "params".into(),
            message,
        })?;
        Ok(self.wrapped(select))
    }

    /// UNLOAD refuses a LIMIT in its outer SELECT ("Unloading data to Amazon S3", Amazon
    /// Redshift Database Developer Guide): a SELECT with a limit of its own runs nested, as
    /// UNLOAD's usage notes limit rows.
    pub(super) fn wrapped(&self, select: String) -> String {
        if self.own_limit {
            format!("SELECT * FROM (\n{select}\n) AS export")
        } else {
            select
        }
    }
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

impl Export {
    /// The placeholder names the template uses, in order of first use.
    fn placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Placeholder { name, .. } = segment {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Replaces each `:name` with its literals (comma-separated for lists).
    pub(super) fn substitute(
        &self,
        bound: &BTreeMap<String, Vec<Literal>>,
    ) -> Result<String, String> {
        self.substitute_with(|name| {
            bound.get(name).map(|literals| {
                literals
                    .iter()
                    .map(Literal::to_sql)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        })
    }

    /// Replaces each `:name` with what `piece` gives for it.
    pub(super) fn substitute_with(
        &self,
        piece: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(self.template.len() + 64);
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Placeholder { name, spaced_after } => {
                    let text =
                        piece(name).ok_or_else(|| format!("no value for placeholder :{name}"))?;
                    // Spaces around the literal: it can never fuse with a neighbouring token
                    // of the template (as `E` before a quote would make an escape string).
                    if !out.is_empty() && !out.ends_with(char::is_whitespace) {
                        out.push(' ');
                    }
                    out.push_str(&text);
                    if *spaced_after {
                        out.push(' ');
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A piece of the template: its text between placeholders, printed back exactly as written,
/// or a `:name` placeholder, with whether a token follows it without a space between.
#[derive(Clone, Debug)]
pub(super) enum Segment {
    Text(String),
    Placeholder { name: String, spaced_after: bool },
}

/// The template cut at its placeholders. Works on tokens, never on text, so a `:name` inside
/// a string literal or comment of the template is text like the rest.
pub(super) fn segments(template: &str) -> Result<Vec<Segment>, String> {
    let tokens = tokenize(template)?;
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Some(name) = placeholder_at(&tokens, i) {
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Placeholder {
                name: name.to_owned(),
                spaced_after: tokens
                    .get(i + 2)
                    .is_some_and(|t| !matches!(t, Token::Whitespace(_))),
            });
            i += 2;
        } else {
            text.push_str(&tokens[i].to_string());
            i += 1;
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::super::{params, PRODUCT};
    use super::*;
    use serde_json::json;

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
}
