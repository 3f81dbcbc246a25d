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
    pub(super) fn check_template(&self) -> Result<(), String> {
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
    substitute_with(template, |name| {
        bound.get(name).map(|literals| {
            literals
                .iter()
                .map(Literal::to_sql)
                .collect::<Vec<_>>()
                .join(", ")
        })
    })
}

/// Replaces each `:name` token with what `piece` gives for it.
pub(super) fn substitute_with(
    template: &str,
    piece: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let tokens = tokenize(template)?;
    let mut out = String::with_capacity(template.len() + 64);
    let mut i = 0;
    while i < tokens.len() {
        if let Some(name) = placeholder_at(&tokens, i) {
            let text = piece(name).ok_or_else(|| format!("no value for placeholder :{name}"))?;
            // Spaces around the literal: it can never fuse with a neighbouring token of the
            // template (as `E` before a quote would make an escape string).
            if !out.is_empty() && !out.ends_with(char::is_whitespace) {
                out.push(' ');
            }
            out.push_str(&text);
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
