//! SQL literals and the UNLOAD statement.
//!
//! A parameter value reaches Redshift through two string-literal levels: the export's SELECT
//! holds it as `'…'`, and UNLOAD holds that whole SELECT as `('…')`. Redshift treats both `''`
//! and backslash escapes inside literals, so each level doubles single quotes and backslashes.
//! Nothing else is special inside a literal (`--`, `/*`, `;` are plain characters there), so a
//! value escaped this way stays one literal whatever its bytes. NUL is the one character a
//! Redshift string cannot hold; it is refused rather than silently dropped.

use crate::domain::{Compression, Format, ObjectRef};
use sqlparser::ast::{Query, Statement};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// One value ready to be written into SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    /// Text, already checked to be representable.
    Text(String),
    Integer(i64),
    /// A decimal in canonical form (`-12.50`), checked against precision and scale.
    Decimal(String),
    /// `YYYY-MM-DD`, checked to be a real date.
    Date(String),
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, checked to be a real time.
    Timestamp(String),
    Boolean(bool),
}

impl Literal {
    pub fn text(s: &str) -> Result<Literal, String> {
        if s.contains('\0') {
            return Err("contains a NUL character, which Redshift text cannot hold".into());
        }
        Ok(Literal::Text(s.to_owned()))
    }

    pub fn decimal(s: &str, precision: u32, scale: u32) -> Result<Literal, String> {
        let rule = || {
            format!("must be a decimal with at most {precision} digits, {scale} after the point")
        };
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(rule());
        }
        let whole = whole.trim_start_matches('0');
        if fraction.len() > scale as usize || whole.len() + scale as usize > precision as usize {
            return Err(rule());
        }
        let whole = if whole.is_empty() { "0" } else { whole };
        let sign = if negative { "-" } else { "" };
        Ok(Literal::Decimal(if fraction.is_empty() {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{fraction}")
        }))
    }

    pub fn date(s: &str) -> Result<Literal, String> {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 10)
            .map(|_| Literal::Date(s.to_owned()))
            .ok_or_else(|| "must be a real date written YYYY-MM-DD".into())
    }

    pub fn timestamp(s: &str) -> Result<Literal, String> {
        let normalised = s.replacen('T', " ", 1);
        chrono::NaiveDateTime::parse_from_str(&normalised, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| Literal::Timestamp(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()))
            .map_err(|_| "must be a real timestamp written YYYY-MM-DD HH:MM:SS[.ffffff]".into())
    }

    /// The literal as it appears in a SELECT.
    pub fn to_sql(&self) -> String {
        match self {
            Literal::Null => "NULL".into(),
            Literal::Text(s) => quote(s),
            // Parenthesised so a negative value can never merge with a preceding `-`
            // into a `--` comment.
            Literal::Integer(v) if *v < 0 => format!("({v})"),
            Literal::Integer(v) => v.to_string(),
            Literal::Decimal(d) if d.starts_with('-') => format!("({d})"),
            Literal::Decimal(d) => d.clone(),
            Literal::Date(d) => format!("CAST({} AS DATE)", quote(d)),
            Literal::Timestamp(t) => format!("CAST({} AS TIMESTAMP)", quote(t)),
            Literal::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        }
    }
}

/// Wraps `s` in single quotes, doubling quotes and backslashes: one Redshift literal level.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Redshift's text as the parser reads it, with the same meaning: words Redshift takes that
/// sqlparser does not are rewritten to ones it does. `APPROXIMATE COUNT(DISTINCT …)` and
/// `APPROXIMATE PERCENTILE_DISC` ask Redshift for an estimate, and an exact answer is within
/// any estimate's error, so the word goes; a date part abbreviation in `EXTRACT(ms FROM …)`
/// is quoted; `TRIM(BOTH FROM x)` names the blank it trims. Only checks and the local
/// warehouse read this text: what Redshift runs is the text as written.
pub fn parser_text(sql: &str) -> Result<String, String> {
    // Raw tokens: a literal prints back exactly as written (`'it''s'`, `'a\\b'`), never
    // unescaped and then printed without its escapes.
    let tokens = Tokenizer::new(&RedshiftSqlDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| e.to_string())?;
    let is_word = |t: &Token, w: &str| matches!(t, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w));
    let mut out = String::with_capacity(sql.len());
    let mut changed = false;
    let significant = |from: usize| {
        tokens[from..]
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
            .map(move |(i, t)| (from + i, t))
    };
    for (i, token) in tokens.iter().enumerate() {
        // EXTRACT(ms FROM …): Redshift's abbreviations are no field the parser knows; quoted,
        // every one is, and the rewrite below reads it.
        if let Token::Word(word) = token {
            let before: Vec<&Token> = tokens[..i]
                .iter()
                .rev()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .take(2)
                .collect();
            let after = significant(i + 1).next().map(|(_, t)| t);
            if word.quote_style.is_none()
                && matches!(before.as_slice(), [Token::LParen, w] if is_word(w, "extract"))
                && after.is_some_and(|t| is_word(t, "from"))
            {
                out.push_str(&Token::SingleQuotedString(word.value.clone()).to_string());
                changed = true;
                continue;
            }
        }
        // TRIM(BOTH FROM x): the blank is what goes when no character is named.
        if is_word(token, "from") {
            let before: Vec<&Token> = tokens[..i]
                .iter()
                .rev()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .take(3)
                .collect();
            if let [side, Token::LParen, trim] = before.as_slice() {
                if is_word(trim, "trim")
                    && ["both", "leading", "trailing"]
                        .iter()
                        .any(|w| is_word(side, w))
                {
                    out.push_str("' ' ");
                    changed = true;
                }
            }
        }
        if is_word(token, "approximate") {
            let next = tokens[i + 1..]
                .iter()
                .find(|t| !matches!(t, Token::Whitespace(_)));
            if next.is_some_and(|n| is_word(n, "count") || is_word(n, "percentile_disc")) {
                changed = true;
                continue;
            }
        }
        out.push_str(&token.to_string());
    }
    Ok(if changed { out } else { sql.to_owned() })
}

/// Parses text that must be exactly one query (SELECT / WITH …), in Redshift's dialect.
pub fn parse_query(sql: &str) -> Result<Box<Query>, String> {
    let sql = parser_text(sql)?;
    let statements = Parser::parse_sql(&RedshiftSqlDialect {}, &sql).map_err(|e| e.to_string())?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(query)]) => Ok(query),
        Ok(_) => Err("the statement is not a query".into()),
        Err(v) => Err(format!("expected one statement, found {}", v.len())),
    }
}

/// Everything an UNLOAD needs besides the query.
#[derive(Clone, Debug, PartialEq)]
pub struct UnloadOptions {
    /// Prefix the parts and the manifest are written under (`s3://bucket/prefix`).
    pub target: ObjectRef,
    /// The role Redshift assumes to write to the bucket; `default` uses the cluster's default.
    pub iam_role: String,
    pub format: Format,
    pub compression: Compression,
    /// Upper bound on one part's size, in MB (Redshift accepts 5 to 6200).
    pub max_file_size_mb: u32,
    /// Only a retry that must replace a failed attempt's parts sets this.
    pub allow_overwrite: bool,
    /// False renders `PARALLEL OFF`: one slice writes, in the SELECT's order.
    pub parallel: bool,
}

/// Renders `UNLOAD ('<select>') TO … MANIFEST VERBOSE …` with the SELECT quoted once more.
pub fn render_unload(select: &str, options: &UnloadOptions) -> String {
    let mut sql = format!(
        "UNLOAD ({})\nTO {}\nIAM_ROLE {}\n",
        quote(select),
        quote(&options.target.s3_url()),
        if options.iam_role == "default" {
            "default".to_owned()
        } else {
            quote(&options.iam_role)
        }
    );
    sql.push_str(match options.format {
        Format::Csv => "FORMAT AS CSV\n",
        Format::Parquet => "FORMAT AS PARQUET\n",
        Format::Json => "FORMAT AS JSON\n",
    });
    if options.format.has_header_line() {
        sql.push_str("HEADER\n");
    }
    match options.compression {
        Compression::None => {}
        Compression::Gzip => sql.push_str("GZIP\n"),
        Compression::Zstd => sql.push_str("ZSTD\n"),
    }
    sql.push_str(&format!(
        "MANIFEST VERBOSE\nMAXFILESIZE {} MB",
        options.max_file_size_mb
    ));
    if !options.parallel {
        sql.push_str("\nPARALLEL OFF");
    }
    if options.allow_overwrite {
        sql.push_str("\nALLOWOVERWRITE");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes_and_backslashes() {
        assert_eq!(quote(r"it's \ fine"), r"'it''s \\ fine'");
        assert_eq!(
            Literal::text("a\0b").unwrap_err(),
            "contains a NUL character, which Redshift text cannot hold"
        );
    }

    #[test]
    fn numbers_dates_and_times_are_canonical() {
        assert_eq!(Literal::decimal("007.50", 5, 2).unwrap().to_sql(), "7.50");
        assert_eq!(Literal::decimal("-1", 5, 2).unwrap().to_sql(), "(-1)");
        assert!(Literal::decimal("1234", 5, 2).is_err());
        assert!(Literal::decimal(".5", 5, 2).is_err());
        assert_eq!(Literal::Integer(-3).to_sql(), "(-3)");
        assert!(Literal::date("2024-2-01").is_err());
        assert_eq!(
            Literal::timestamp("2024-02-01T10:00:00").unwrap().to_sql(),
            "CAST('2024-02-01 10:00:00.000000' AS TIMESTAMP)"
        );
    }

    #[test]
    fn unload_carries_every_option() {
        let sql = render_unload(
            "SELECT 'a''b' AS x",
            &UnloadOptions {
                target: ObjectRef::new("results", "exports/r1/"),
                iam_role: "arn:aws:iam::1:role/unload".into(),
                format: Format::Csv,
                compression: Compression::Gzip,
                max_file_size_mb: 100,
                allow_overwrite: false,
                parallel: true,
            },
        );
        assert!(sql.starts_with("UNLOAD ('SELECT ''a''''b'' AS x')\nTO 's3://results/exports/r1/'"));
        for part in [
            "IAM_ROLE 'arn:aws:iam::1:role/unload'",
            "FORMAT AS CSV\nHEADER",
            "GZIP",
            "MANIFEST VERBOSE",
            "MAXFILESIZE 100 MB",
        ] {
            assert!(sql.contains(part), "{part} missing from {sql}");
        }
        assert!(!sql.contains("ALLOWOVERWRITE"));
        let statements = Parser::parse_sql(&RedshiftSqlDialect {}, &sql).unwrap();
        let Statement::Unload { query_text, .. } = &statements[0] else {
            panic!("{statements:?}")
        };
        assert_eq!(query_text.as_deref(), Some("SELECT 'a''b' AS x"));
    }

    #[test]
    fn a_quoted_approximate_is_a_name() {
        assert_eq!(
            parser_text("SELECT \"approximate\" count").unwrap(),
            "SELECT \"approximate\" count"
        );
    }

    #[test]
    fn redshift_words_the_parser_lacks_are_read() {
        for sql in [
            "SELECT APPROXIMATE COUNT(DISTINCT a) FROM t",
            "SELECT EXTRACT(ms FROM a) FROM t",
            "SELECT TRIM(BOTH FROM a) FROM t",
        ] {
            parse_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
